/* Publishes events on a bus in one process and reads them in another, through
 * an installed flowbus's C ABI (see Makefile).
 *   bus_c sub BUS COUNT SCHEMA [TIMEOUT_S]   reads COUNT events, in order, then exits 0
 *   bus_c pub BUS COUNT SCHEMA               publishes COUNT events
 * SCHEMA: the topic's schema, e.g. <prefix>/share/flowbus/schemas/examples/sensor.fbs.
 * Start the subscriber first: it sees every event published after it subscribed.
 * The payload here is a short text; a real producer sends a FlatBuffer of the
 * topic's type. */
#include <flowbus.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOPIC "sensor.temp.line1"

static int fail(const char* what) {
  fprintf(stderr, "%s: %s\n", what, flowbus_last_error());
  return 1;
}

/* Both sides register the topic: whoever comes first creates it. */
static flowbus_bus* open_bus(const char* name, const char* schema) {
  flowbus_bus* bus = flowbus_bus_open(name);
  if (bus == NULL) return NULL;
  if (flowbus_topic_create(bus, TOPIC, schema, NULL, FLOWBUS_POLICY_BLOCK, 1u << 20) != FLOWBUS_OK) {
    flowbus_bus_close(bus);
    return NULL;
  }
  return bus;
}

static int publish(flowbus_bus* bus, unsigned long count) {
  flowbus_publisher* pub = flowbus_publisher_open(bus, TOPIC, "cline1");
  if (pub == NULL) return fail("pub");
  for (unsigned long i = 0; i < count; ++i) {
    char payload[32];
    int n = snprintf(payload, sizeof payload, "reading %lu", i);
    if (flowbus_publisher_publish(pub, payload, (size_t)n, 5000000000ull) != FLOWBUS_OK) {
      flowbus_publisher_close(pub);
      return fail("pub");
    }
  }
  flowbus_publisher_close(pub);
  printf("pub: %lu events published (flowbus %s)\n", count, flowbus_version());
  return 0;
}

static int subscribe(flowbus_bus* bus, unsigned long count, int timeout_s) {
  flowbus_subscriber* sub = flowbus_subscriber_open(bus, "sensor.>", 1);
  if (sub == NULL) return fail("sub");
  printf("sub: ready\n");
  fflush(stdout);
  unsigned long next = 0;
  int in_order = 1;
  time_t deadline = time(NULL) + timeout_s;
  while (next < count && time(NULL) < deadline) {
    flowbus_event ev;
    int status = flowbus_subscriber_read(sub, &ev);
    if (status == FLOWBUS_EMPTY) {
      flowbus_subscriber_wait(sub, 100000000ull); /* 100 ms */
      continue;
    }
    if (status != FLOWBUS_OK) {
      in_order = 0;
      if (status == FLOWBUS_ERROR || status == FLOWBUS_CORRUPT) break;
      continue; /* EVICTED, LOST: events were skipped */
    }
    char expected[32];
    int n = snprintf(expected, sizeof expected, "reading %lu", next);
    if (ev.size != (size_t)n || memcmp(ev.data, expected, ev.size) != 0 || ev.sequence != next) in_order = 0;
    ++next;
    flowbus_subscriber_release(sub);
  }
  flowbus_subscriber_close(sub);
  printf("sub: %lu of %lu events%s\n", next, count, in_order ? ", in order" : ", NOT in order");
  return next == count && in_order ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 5 || (strcmp(argv[1], "pub") != 0 && strcmp(argv[1], "sub") != 0)) {
    fprintf(stderr, "usage: %s pub|sub BUS COUNT SCHEMA [TIMEOUT_S]\n", argv[0]);
    return 2;
  }
  flowbus_bus* bus = open_bus(argv[2], argv[4]);
  if (bus == NULL) return fail(argv[1]);
  unsigned long count = strtoul(argv[3], NULL, 10);
  int rc = strcmp(argv[1], "pub") == 0 ? publish(bus, count) : subscribe(bus, count, argc > 5 ? atoi(argv[5]) : 10);
  flowbus_bus_close(bus);
  return rc;
}
