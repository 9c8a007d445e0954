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
  printf("c api ok\n");
  return 0;
}
