// Subscriptions recorded in reader segments, and the attachments reserved
// for them.
//
// Ordering (the start-up Dekker, across the file system): a Subscriber
// writes its pattern and tag into a reader segment and links it into
// /dev/shm, then scans the ring table (seq_cst loads); a ring's creator
// stores its ring slot Claiming (seq_cst), then, before the ring is Ready,
// lists /dev/shm. link() and getdents() take the directory's inode lock, so
// one comes first: either the creator's listing shows the segment and it
// reserves an attachment for the subscription, or the subscriber's scan
// comes after the creator's Claiming store and sees the ring being created,
// and so treats it as new (joined at its start, with what was overwritten
// before it came counted). Or both: the creator listed the segment and made
// the ring Ready before the scan got to its slot; the subscriber then finds
// the reservation all the same (Subscriber::attach_rings looks in every ring
// its subscribe-time scan attaches).
#include "subscriptions.hpp"

#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "flowbus/detail/platform.hpp"
#include "flowbus/names.hpp"
#include "reader_admission.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"
#include "writer_door.hpp"

namespace flowbus::detail {

namespace {
constexpr uint32_t kReservationsPerOtherUser = 16;  // of kAttachments (64)
}  // namespace

uint32_t reserve_for_subscribers(const BusState& bus, const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot,
                                 ControlHeader* control) noexcept {
  // Under Latest nothing holds the writer: a reader of a ring made after it
  // subscribed joins at the ring's start, and counts what was overwritten.
  if (topic.policy != Policy::Block) return 0;
  // Our ring slot's Claiming store (seq_cst) comes before the listing below.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint32_t reserved = 0;
  try {
    ReaderAdmissions admissions(bus.name, publisher_id, ring_slot, reader_rule(topic));
    const std::string prefix = reader_segment_prefix(bus.name) + "r.";
    for (const std::string& name : list_shm_segments()) {
      uint32_t pid = 0, n = 0;
      if (!parse_reader_segment_name(name, prefix, pid, n)) continue;
      // Attested: a segment that could not read this ring (another group's,
      // a dead process's, forged) gets nothing; a reservation it cannot use
      // would hold the writer back until the slow-consumer timeout.
      const std::optional<ReaderSubscription> s = admissions.subscription_of(pid, n);
      if (!s || !pattern_matches(s->pattern, topic.name)) continue;
      bool known = false;  // a Subscriber with segments of several groups records its tag in each
      uint32_t of_uid = 0;
      for (uint32_t k = 0; k < reserved; ++k) {
        const Attachment& b = control->attachments[k];
        known |= b.pid.load(std::memory_order_relaxed) == s->who.pid &&
                 b.subscription.load(std::memory_order_relaxed) == s->tag;
        of_uid += b.uid.load(std::memory_order_relaxed) == s->who.uid;
      }
      if (known) continue;
      // Another user (a member of the topic's group, or anyone on a
      // world-readable topic) may hold only so many: one who subscribes
      // 64 times would otherwise take every attachment of every new ring.
      // Our own uid and root are trusted as we are.
      const bool trusted = s->who.uid == 0 || s->who.uid == uint32_t(::geteuid());
      if (!trusted && of_uid == kReservationsPerOtherUser) continue;
      if (reserved == kAttachments) break;
      // Ours alone (.ctl is the writer's), and no reader knows the ring yet:
      // fields first, then the state (release: a reader that acquires it sees
      // the fields). The writer's recover_attachments() takes these over.
      Attachment& a = control->attachments[reserved++];
      const uint64_t epoch = AttachmentState::epoch(a.state.load(std::memory_order_relaxed)) + 1;
      a.token.store(s->who.token, std::memory_order_relaxed);
      a.pid.store(s->who.pid, std::memory_order_relaxed);
      a.uid.store(s->who.uid, std::memory_order_relaxed);
      a.n.store(s->who.n, std::memory_order_relaxed);
      a.line.store(kNoLine, std::memory_order_relaxed);
      a.start_time.store(s->who.start_time, std::memory_order_relaxed);
      a.subscription.store(s->tag, std::memory_order_relaxed);
      a.held_from.store(0, std::memory_order_relaxed);
      a.since_ns.store(unix_now_ns(), std::memory_order_relaxed);  // tools: idle since the reservation
      a.state.store(AttachmentState::pack(epoch, AttachmentState::kReserved), std::memory_order_release);
    }
  } catch (...) {
    // Out of memory listing /dev/shm: what was reserved stays; subscribers
    // not reserved for join the ring at its start, with losses counted.
  }
  return reserved;
}

}  // namespace flowbus::detail
