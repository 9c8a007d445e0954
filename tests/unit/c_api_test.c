/* The C ABI from C: open, create a topic, publish raw FlatBuffer bytes,
 * read them in place, release; errors come back with a message. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "flowbus.h"

#define CHECK(cond)                                                                     \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond,      \
              flowbus_last_error());                                                   \
      return 1;                                                                         \
    }                                                                                   \
  } while (0)

int main(int argc, char** argv) {
  CHECK(argc == 2); /* the path of schemas/examples/sensor.fbs */
  char name[64];
  snprintf(name, sizeof name, "capi-%d", (int)getpid());

  CHECK(flowbus_bus_open("Bad Name") == NULL);
  CHECK(strstr(flowbus_last_error(), "invalid bus name") != NULL);

  flowbus_bus* bus = flowbus_bus_open(name);
  CHECK(bus != NULL);
  CHECK(flowbus_topic_create(bus, "sensor.temp.line1", argv[1], NULL, FLOWBUS_POLICY_BLOCK, 65536) == FLOWBUS_OK);
  flowbus_publisher* pub = flowbus_publisher_open(bus, "sensor.temp.line1", "cprobe");
  CHECK(pub != NULL);
  flowbus_subscriber* sub = flowbus_subscriber_open(bus, "sensor.>", 1);
  CHECK(sub != NULL);

  /* NULL handles and buffers are refused with a message, never dereferenced. */
  {
    flowbus_event none;
    size_t published = 0;
    CHECK(flowbus_publisher_try_publish(NULL, "x", 1) == FLOWBUS_ERROR);
    CHECK(strstr(flowbus_last_error(), "publisher") != NULL);
    CHECK(flowbus_publisher_publish(NULL, "x", 1, 0) == FLOWBUS_ERROR);
    CHECK(flowbus_publisher_try_publish(pub, NULL, 1) == FLOWBUS_ERROR);
    CHECK(strstr(flowbus_last_error(), "data") != NULL);
    CHECK(flowbus_publisher_try_publish_batch(NULL, NULL, 0, &published) == FLOWBUS_ERROR);
    CHECK(flowbus_publisher_publish_batch(NULL, NULL, 0, 0, &published) == FLOWBUS_ERROR);
    CHECK(flowbus_subscriber_read(NULL, &none) == FLOWBUS_ERROR);
    CHECK(strstr(flowbus_last_error(), "subscriber") != NULL);
    CHECK(flowbus_subscriber_read(sub, NULL) == FLOWBUS_ERROR);
    CHECK(flowbus_subscriber_release(NULL) == FLOWBUS_ERROR);
    CHECK(flowbus_subscriber_wait(NULL, 0) == FLOWBUS_ERROR);
  }

  /* Any bytes go in; a real producer sends a FlatBuffer of the topic's type. */
  const char payload[] = "0123456789abcdef";
  CHECK(flowbus_publisher_try_publish(pub, payload, sizeof payload) == FLOWBUS_OK);
  CHECK(flowbus_subscriber_wait(sub, 1000000000ull) == FLOWBUS_OK);
  flowbus_event ev;
  CHECK(flowbus_subscriber_read(sub, &ev) == FLOWBUS_OK);
  CHECK(ev.size == sizeof payload && memcmp(ev.data, payload, sizeof payload) == 0);
  CHECK(ev.sequence == 0);
  CHECK(strcmp(ev.type, "examples.SensorReading") == 0);
  CHECK(strstr(ev.source, "/cprobe") != NULL);
  CHECK(flowbus_subscriber_read(sub, &ev) == FLOWBUS_ERROR); /* still holding */
  CHECK(flowbus_subscriber_release(sub) == FLOWBUS_OK);
  CHECK(flowbus_subscriber_read(sub, &ev) == FLOWBUS_EMPTY);

  /* Bursts: one clock read per burst, each event with its own sequence. */
  const char first[] = "first", second[] = "second", third[] = "third";
  const flowbus_bytes burst[3] = {{first, sizeof first}, {second, sizeof second}, {third, sizeof third}};
  size_t published = 99;
  CHECK(flowbus_publisher_try_publish_batch(pub, burst, 3, &published) == FLOWBUS_OK);
  CHECK(published == 3);
  uint64_t burst_time = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(flowbus_subscriber_read(sub, &ev) == FLOWBUS_OK);
    CHECK(ev.sequence == (uint64_t)(1 + i));
    CHECK(ev.size == burst[i].size && memcmp(ev.data, burst[i].data, ev.size) == 0);
    if (i == 0) burst_time = ev.time_ns;
    CHECK(ev.time_ns == burst_time && burst_time != 0);
    CHECK(flowbus_subscriber_release(sub) == FLOWBUS_OK);
  }

  /* An event that can never fit stops the burst after the ones before it. */
  static char huge[40000]; /* more than half the 64 KiB ring */
  const flowbus_bytes with_huge[3] = {{first, sizeof first}, {huge, sizeof huge}, {third, sizeof third}};
  CHECK(flowbus_publisher_try_publish_batch(pub, with_huge, 3, &published) == FLOWBUS_TOO_LARGE);
  CHECK(published == 1);

  /* Block, nobody reading: the ring fills part-way through the bursts. */
  static flowbus_bytes many[3000];
  for (int i = 0; i < 3000; ++i) {
    many[i].data = payload;
    many[i].size = sizeof payload;
  }
  CHECK(flowbus_publisher_try_publish_batch(pub, many, 3000, &published) == FLOWBUS_FULL);
  CHECK(published > 64 && published < 3000); /* several bursts went in, not all */
  size_t more = 99;
  CHECK(flowbus_publisher_publish_batch(pub, many, 10, 1000000ull, &more) == FLOWBUS_FULL); /* 1 ms, still full */
  CHECK(more == 0);
  /* What went in is all there, in order: "first", then `published` payloads. */
  size_t drained = 0;
  uint64_t expected_sequence = 4;
  while (flowbus_subscriber_read(sub, &ev) == FLOWBUS_OK) {
    CHECK(ev.sequence == expected_sequence++);
    CHECK(ev.size == (drained == 0 ? sizeof first : sizeof payload));
    CHECK(flowbus_subscriber_release(sub) == FLOWBUS_OK);
    ++drained;
  }
  CHECK(drained == 1 + published);
  /* With room again, a waiting burst goes in whole. */
  CHECK(flowbus_publisher_publish_batch(pub, many, 10, 1000000000ull, &more) == FLOWBUS_OK);
  CHECK(more == 10);
  CHECK(flowbus_publisher_try_publish_batch(pub, NULL, 0, NULL) == FLOWBUS_OK);
  CHECK(flowbus_publisher_try_publish_batch(pub, NULL, 5, &more) == FLOWBUS_ERROR);
  CHECK(strstr(flowbus_last_error(), "events is NULL") != NULL);

  /* An untrusted topic: bytes that are no FlatBuffer of its type are refused,
   * counted in `missed`, and never handed over; the same name without the
   * flag is another setting, refused by name. */
  CHECK(flowbus_topic_create_with_flags(bus, "sensor.untrusted", argv[1], NULL, FLOWBUS_POLICY_BLOCK, 65536, 2) ==
        FLOWBUS_ERROR);
  CHECK(strstr(flowbus_last_error(), "FLOWBUS_TOPIC_UNTRUSTED") != NULL);
  CHECK(flowbus_topic_create_with_flags(bus, "sensor.untrusted", argv[1], NULL, FLOWBUS_POLICY_BLOCK, 65536,
                                        FLOWBUS_TOPIC_UNTRUSTED) == FLOWBUS_OK);
  CHECK(flowbus_topic_create(bus, "sensor.untrusted", argv[1], NULL, FLOWBUS_POLICY_BLOCK, 65536) == FLOWBUS_ERROR);
  CHECK(strstr(flowbus_last_error(), "untrusted yes, asked no") != NULL);
  {
    flowbus_publisher* rogue = flowbus_publisher_open(bus, "sensor.untrusted", "cprobe");
    CHECK(rogue != NULL);
    flowbus_subscriber* careful = flowbus_subscriber_open(bus, "sensor.untrusted", 1);
    CHECK(careful != NULL);
    CHECK(flowbus_publisher_try_publish(rogue, payload, sizeof payload) == FLOWBUS_OK);
    flowbus_event bad;
    CHECK(flowbus_subscriber_read(careful, &bad) == FLOWBUS_REJECTED);
    CHECK(bad.missed == 1 && bad.data == NULL);
    CHECK(flowbus_subscriber_read(careful, &bad) == FLOWBUS_EMPTY);
    flowbus_subscriber_close(careful);
    flowbus_publisher_close(rogue);
  }

  /* A subscriber that backs off while it waits: it sees what comes, and
   * settings out of range are refused by name. */
  {
    flowbus_subscriber* patient = flowbus_subscriber_open_backoff(bus, "sensor.temp.line1", 0, NULL);
    CHECK(patient != NULL);
    CHECK(flowbus_subscriber_wait(patient, 1000000ull) == FLOWBUS_TIMEOUT);
    CHECK(flowbus_publisher_try_publish(pub, payload, sizeof payload) == FLOWBUS_OK);
    CHECK(flowbus_subscriber_wait(patient, 1000000000ull) == FLOWBUS_OK);
    flowbus_event got;
    CHECK(flowbus_subscriber_read(patient, &got) == FLOWBUS_OK);
    CHECK(got.size == sizeof payload && memcmp(got.data, payload, sizeof payload) == 0);
    CHECK(flowbus_subscriber_release(patient) == FLOWBUS_OK);
    flowbus_subscriber_close(patient);
    flowbus_backoff wrong = flowbus_backoff_defaults();
    CHECK(wrong.spins == 1000 && wrong.min_park_ns == 1000 && wrong.max_park_ns == 1000000);
    wrong.max_park_ns = wrong.min_park_ns - 1;
    CHECK(flowbus_subscriber_open_backoff(bus, "sensor.temp.line1", 0, &wrong) == NULL);
    CHECK(strstr(flowbus_last_error(), "max_park") != NULL);
  }

  flowbus_subscriber_close(sub);
  flowbus_publisher_close(pub);
  flowbus_bus_close(bus);

  /* Leave nothing behind. */
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/flowbus.%s", name);
  unlink(path);
  snprintf(path, sizeof path, "/dev/shm/flowbus.%s.sensor.temp.line1@cprobe", name);
  unlink(path);
  snprintf(path, sizeof path, "/dev/shm/flowbus.%s.sensor.temp.line1@cprobe.ctl", name);
  unlink(path);
  snprintf(path, sizeof path, "/dev/shm/flowbus.%s.sensor.untrusted@cprobe", name);
  unlink(path);
  snprintf(path, sizeof path, "/dev/shm/flowbus.%s.sensor.untrusted@cprobe.ctl", name);
  unlink(path);
  printf("c api ok\n");
  return 0;
}
