/* flowbus C ABI: opaque handles, flowbus_<noun>_<verb>, integer status plus a
 * thread-local last-error message. Thread rules are those of the C++ API:
 * a publisher or subscriber is used by one thread at a time. */
#ifndef FLOWBUS_H
#define FLOWBUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct flowbus_bus flowbus_bus;
typedef struct flowbus_publisher flowbus_publisher;
typedef struct flowbus_subscriber flowbus_subscriber;

enum flowbus_status {
  FLOWBUS_OK = 0,
  FLOWBUS_FULL = 1,      /* block policy: no room yet */
  FLOWBUS_EMPTY = 2,     /* nothing to read */
  FLOWBUS_EVICTED = 3,   /* the subscriber was evicted; `missed` events skipped */
  FLOWBUS_LOST = 4,      /* latest policy: lapped; `missed` events lost */
  FLOWBUS_CORRUPT = 5,   /* a ring failed a consistency check and is no longer read */
  FLOWBUS_TOO_LARGE = 6, /* the event can never fit the ring */
  FLOWBUS_TIMEOUT = 7,
  FLOWBUS_WRONG_PROCESS = 8, /* the handle came through fork(): it is the parent's; open the bus again */
  FLOWBUS_REJECTED = 9,      /* untrusted topic: `missed` events failed verification and were skipped */
  FLOWBUS_ERROR = -1         /* see flowbus_last_error() */
};

enum flowbus_policy { FLOWBUS_POLICY_BLOCK = 0, FLOWBUS_POLICY_LATEST = 1 };

/* Topic flags (flowbus_topic_create_with_flags). */
enum flowbus_topic_flags {
  /* Readers copy each event out of the ring and verify the copy against the
   * schema; flowbus_event.data then points at that copy (valid until release). */
  FLOWBUS_TOPIC_UNTRUSTED = 1
};

/* One event read in place. data points into shared memory (untrusted
 * topics: at the subscriber's verified copy) and stays valid
 * until flowbus_subscriber_release. Strings are NUL-terminated and live as
 * long as the subscriber. */
typedef struct flowbus_event {
  const uint8_t* data;
  size_t size;
  uint64_t sequence;
  uint64_t time_ns; /* since the Unix epoch */
  uint64_t publisher_id;
  uint64_t missed; /* with FLOWBUS_EVICTED, FLOWBUS_LOST or FLOWBUS_REJECTED */
  const char* topic;
  const char* source;
  const char* type;
  const char* dataschema;
  const char* datacontenttype;
  const char* subject; /* not NUL-terminated: subject_len bytes */
  size_t subject_len;
} flowbus_event;

/* The version of the flowbus library loaded, "major.minor.patch". */
const char* flowbus_version(void);

/* The message of the last failed call on this thread ("" if none). */
const char* flowbus_last_error(void);

flowbus_bus* flowbus_bus_open(const char* name);
void flowbus_bus_close(flowbus_bus* bus);

/* Registers a topic from a .fbs (or .bfbs) file; type NULL = the schema's root_type. */
int flowbus_topic_create(flowbus_bus* bus, const char* topic, const char* schema_file, const char* type,
                         int policy, uint64_t ring_size);
/* As flowbus_topic_create, with flowbus_topic_flags OR'ed in `flags`. */
int flowbus_topic_create_with_flags(flowbus_bus* bus, const char* topic, const char* schema_file, const char* type,
                                    int policy, uint64_t ring_size, uint32_t flags);

flowbus_publisher* flowbus_publisher_open(flowbus_bus* bus, const char* topic, const char* name);
void flowbus_publisher_close(flowbus_publisher* publisher);
/* Never waits. */
int flowbus_publisher_try_publish(flowbus_publisher* publisher, const void* data, size_t size);
/* Waits up to timeout_ns for room. */
int flowbus_publisher_publish(flowbus_publisher* publisher, const void* data, size_t size, uint64_t timeout_ns);

/* One event of a burst. */
typedef struct flowbus_bytes {
  const void* data;
  size_t size;
} flowbus_bytes;

/* Publishes events[0..count) in order as bursts of up to 64: one clock read
 * (the events of a burst share its time; each keeps its own sequence) and one
 * wake-up per burst, which is what makes small events cheap. Never waits.
 * Returns FLOWBUS_OK when all went in, else the status that stopped it (FULL,
 * TOO_LARGE); *published (may be NULL) says how many went in: the first ones,
 * none after the one refused. */
int flowbus_publisher_try_publish_batch(flowbus_publisher* publisher, const flowbus_bytes* events, size_t count,
                                        size_t* published);
/* As flowbus_publisher_try_publish_batch, but waits for room up to timeout_ns
 * for the whole call; FULL then means the timeout ran out. */
int flowbus_publisher_publish_batch(flowbus_publisher* publisher, const flowbus_bytes* events, size_t count,
                                    uint64_t timeout_ns, size_t* published);

flowbus_subscriber* flowbus_subscriber_open(flowbus_bus* bus, const char* pattern, int from_earliest);

/* How flowbus_subscriber_wait backs off (WaitStrategy::Backoff in C++):
 * `spins` looks at the rings (0 to 100000000), then `yields` sched_yield()
 * calls (0 to 1000000), then sleeps of min_park_ns (1000 ns up) doubling to
 * max_park_ns (up to 1 s). Uses part of a CPU while idle; publishers never
 * make a system call for it. flowbus_subscriber_open's subscribers instead
 * spin 50 us, then sleep until a publish wakes them. */
typedef struct flowbus_backoff {
  uint32_t spins, yields;
  uint64_t min_park_ns, max_park_ns;
} flowbus_backoff;
/* The defaults: 1000 spins, 10 yields, 1 us to 1 ms. */
flowbus_backoff flowbus_backoff_defaults(void);
/* As flowbus_subscriber_open, waiting as `backoff` says (NULL: the
 * defaults). NULL with the setting out of range named (flowbus_last_error). */
flowbus_subscriber* flowbus_subscriber_open_backoff(flowbus_bus* bus, const char* pattern, int from_earliest,
                                                    const flowbus_backoff* backoff);
void flowbus_subscriber_close(flowbus_subscriber* subscriber);
/* FLOWBUS_OK fills *event; release it before the next read. */
int flowbus_subscriber_read(flowbus_subscriber* subscriber, flowbus_event* event);
int flowbus_subscriber_release(flowbus_subscriber* subscriber);
/* FLOWBUS_OK when something may be readable, FLOWBUS_TIMEOUT otherwise. */
int flowbus_subscriber_wait(flowbus_subscriber* subscriber, uint64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* FLOWBUS_H */
