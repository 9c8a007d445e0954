#include "reader_lines.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "fault_guard.hpp"
#include "flowbus/detail/layout.hpp"
#include "flowbus/error.hpp"
#include "liveness.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"

namespace flowbus::detail {

namespace {

/// A reader segment mapped read-only through the fault guard: its owner may
/// truncate it while we read (a long-running exporter must not die of SIGBUS
/// for it); a cut page reads 0, and callers drop what they read from it.
struct GuardedSegment {
  Segment segment;
  GuardedRange guard;  // after segment: unguarded before it is unmapped
  bool open(const std::string& name) {
    try {
      segment = Segment::open(name, Access::ReadOnly, sizeof(ReaderHeader));
      guard = guard_mapping(segment.data(), segment.size());
      return true;
    } catch (const Error&) {
      return false;
    }
  }
  const ReaderHeader* header() const { return reinterpret_cast<const ReaderHeader*>(segment.data()); }
};

}  // namespace

std::vector<FoundReaderLine> find_reader_lines(const std::string& bus, uint64_t publisher_id, uint32_t ring_slot,
                                               uint32_t* unreadable) {
  std::vector<FoundReaderLine> found;
  const std::string prefix = reader_segment_prefix(bus) + "r.";
  for (const std::string& name : list_shm_segments()) {
    uint32_t pid = 0, n = 0;
    if (!parse_reader_segment_name(name, prefix, pid, n)) continue;
    GuardedSegment seg;
    if (!seg.open(name)) {
      if (unreadable != nullptr) ++*unreadable;  // another group's, or cut short
      continue;
    }
    const ReaderHeader* h = seg.header();
    const GuardedRange& guard = seg.guard;
    const size_t found_before = found.size();
    // Acquire: pairs with the reader's release store of magic (written last).
    if (h->magic.load(std::memory_order_acquire) != kReaderMagic || h->pid != pid) continue;
    const bool alive = process_alive(pid_t(pid), h->start_time);
    for (uint32_t i = 0; i < kReaderLines; ++i) {
      const CursorLine& l = h->line[i];
      // Acquire: pairs with the reader's release store of the position; the
      // key it stored before is then the line's (tools: a stale view is fine).
      const uint64_t position = l.position.load(std::memory_order_acquire);
      if (position == kLineLeft || position == kLineGivenUp ||
          l.publisher_id.load(std::memory_order_relaxed) != publisher_id ||
          (ring_slot != kAnyRingSlot && l.ring_slot.load(std::memory_order_relaxed) != ring_slot))
        continue;
      FoundReaderLine f;
      f.pid = pid;
      f.n = n;
      f.line = i;
      f.token = h->token;
      f.alive = alive;
      f.position = position;
      // Statistics, each on its own: no ordering with anything else.
      f.last_moved_ns = l.last_moved_ns.load(std::memory_order_relaxed);
      f.losses = l.losses.load(std::memory_order_relaxed);
      f.rejected = l.rejected.load(std::memory_order_relaxed);
      f.evictions = l.evictions.load(std::memory_order_relaxed);
      f.sleeping = l.sleeping.load(std::memory_order_relaxed) != 0;
      found.push_back(f);
    }
    if (guard.damaged()) found.resize(found_before);  // cut short under us: what we read may be zeros
  }
  return found;
}

std::vector<FoundSubscription> find_subscriptions(const std::string& bus) {
  std::vector<FoundSubscription> found;
  const std::string prefix = reader_segment_prefix(bus) + "r.";
  for (const std::string& name : list_shm_segments()) {
    uint32_t pid = 0, n = 0;
    if (!parse_reader_segment_name(name, prefix, pid, n)) continue;
    GuardedSegment seg;
    if (!seg.open(name)) continue;  // another group's, or cut short
    const ReaderHeader* h = seg.header();
    const GuardedRange& guard = seg.guard;
    // Acquire: pairs with the reader's release store of magic (written last).
    if (h->magic.load(std::memory_order_acquire) != kReaderMagic || h->pid != pid) continue;
    // Relaxed: written before the magic (acquired above), never changed.
    const uint32_t tag = h->subscription.load(std::memory_order_relaxed);
    if (tag == 0) continue;
    bool known = false;
    for (const FoundSubscription& f : found) known |= f.pid == pid && f.tag == tag;
    if (known) continue;
    FoundSubscription f;
    f.pid = pid;
    f.n = n;
    f.tag = tag;
    f.pattern.assign(h->pattern, strnlen(h->pattern, kPatternBytes));
    f.alive = process_alive(pid_t(pid), h->start_time);
    if (guard.damaged()) continue;  // cut short under us
    struct stat st {};
    if (::stat(("/dev/shm/" + name).c_str(), &st) == 0) f.uid = uint32_t(st.st_uid);
    found.push_back(std::move(f));
  }
  return found;
}

}  // namespace flowbus::detail
