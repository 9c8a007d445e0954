#include "writer_door.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "bus_state.hpp"
#include "liveness.hpp"

namespace flowbus::detail {

ReaderRule reader_rule(const TopicInfo& topic) noexcept {
  return ReaderRule{uint32_t(topic.owner_uid < 0 ? 0 : topic.owner_uid), topic.group, topic.mode};
}

WriterDoor::WriterDoor(const BusState& bus, const TopicInfo& topic, RingSegments& ring)
    : ring_(ring), admissions_(bus.name, ring.publisher_id, ring.slot, reader_rule(topic)) {
  // Right after the ring's segments were made or opened under their names.
  // Without it (no descriptor left) the bell is not repaired.
  bell_fd_ = ::shm_open(("/" + ring.bell.name()).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
}

WriterDoor::~WriterDoor() {
  if (bell_fd_ >= 0) ::close(bell_fd_);
}

ReaderDoor WriterDoor::door() noexcept {
  ReaderDoor d;
  d.context = this;
  d.admit = &WriterDoor::admit;
  d.release = &WriterDoor::release;
  d.damaged = &WriterDoor::damaged;
  d.alive = &WriterDoor::alive;
  d.subscription_alive = &WriterDoor::subscription_alive;
  d.repair_bell = &WriterDoor::repair_bell;
  return d;
}

bool WriterDoor::admit(void* self, const ReaderAnnouncement& a, FollowedReader& out) noexcept {
  auto* door = static_cast<WriterDoor*>(self);
  const std::optional<AdmittedReader> admitted = door->admissions_.admit({a.token, a.pid, a.n, a.line});
  if (!admitted) return false;
  out = {};
  out.token = admitted->token;
  out.start_time = admitted->start_time;
  out.pid = admitted->pid;
  out.uid = admitted->uid;
  out.n = admitted->n;
  out.line_index = admitted->line_index;
  out.subscription = admitted->subscription;
  if (admitted->line == nullptr) return true;  // who it is, no line to follow (kNoLine)
  try {
    door->followed_.push_back(std::make_unique<AdmittedReader>(*admitted));
  } catch (...) {
    door->admissions_.release(*admitted);
    return false;
  }
  out.line = admitted->line;
  out.segment = door->followed_.back().get();
  return true;
}

void WriterDoor::release(void* self, const FollowedReader& reader) noexcept {
  auto* door = static_cast<WriterDoor*>(self);
  const auto it = std::find_if(door->followed_.begin(), door->followed_.end(),
                               [&](const std::unique_ptr<AdmittedReader>& r) { return r.get() == reader.segment; });
  if (it == door->followed_.end()) return;
  door->admissions_.release(**it);
  door->followed_.erase(it);
}

bool WriterDoor::damaged(void*, const FollowedReader& reader) noexcept {
  return reader.segment != nullptr && static_cast<const AdmittedReader*>(reader.segment)->damaged();
}

bool WriterDoor::alive(void*, uint32_t pid, uint64_t start_time) noexcept {
  return process_alive(pid_t(pid), start_time);
}

bool WriterDoor::subscription_alive(void* self, const FollowedReader& reservation, uint32_t tag) noexcept {
  // The same segment (token), its process alive, the subscription not closed,
  // and not given up on this ring: a give-up is rung on the bell once, and
  // if that announcement was erased (or the bell was full) its line still
  // says so here, at the first probe of a writer blocked on it.
  const std::optional<ReaderSubscription> s =
      static_cast<WriterDoor*>(self)->admissions_.subscription_of(reservation.pid, reservation.n);
  return s && s->who.token == reservation.token && s->tag == tag && !s->gave_up_our_ring;
}

bool WriterDoor::repair_bell(void* self) noexcept {
  auto* door = static_cast<WriterDoor*>(self);
  RingSegments& ring = door->ring_;
  const bool faulted = ring.bell_guard.damaged();  // our page is the guard's zero page
  if (!door->bell_cut_ && !faulted) {
    // Cut within its page, the bell faults nobody: its size tells; and a
    // header scribbled on (readers may write it) makes openers wait. One
    // clock read per refresh, an fstat and a look at the header per 100 ms.
    const uint64_t now = monotonic_now_ns();
    if (door->bell_fd_ < 0 || now < door->next_bell_size_check_ns_) return false;
    door->next_bell_size_check_ns_ = now + 100'000'000;
    struct stat st {};
    const BellHeader* b = ring.bell_header();
    if (::fstat(door->bell_fd_, &st) != 0) return false;
    if (uint64_t(st.st_size) >= kBellSegmentSize && b->magic.load(std::memory_order_relaxed) == kBellMagic &&
        b->layout_version == kLayoutVersion && b->slot_count == kBellSlots)
      return false;
  }
  door->bell_cut_ = true;  // until repaired: a fresh guard forgets the old one's count
  const uint64_t now = monotonic_now_ns();
  if (door->bell_fd_ < 0 || now < door->next_bell_repair_ns_) return false;
  door->next_bell_repair_ns_ = now + 10'000'000;  // a refusal, or a reader cutting it again, costs syscalls per 10 ms
  // Its page back, with room reserved (a /dev/shm filled by a reader must
  // not turn our header's stores into faults), then, if we faulted, that
  // page mapped over the guard's zero page and guarded afresh.
  if (::posix_fallocate(door->bell_fd_, 0, off_t(kBellSegmentSize)) != 0) return false;
  if (faulted) {
    void* base = ring.bell.data();
    if (::mmap(base, kBellSegmentSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, door->bell_fd_, 0) != base)
      return false;
    (void)::madvise(base, kBellSegmentSize, MADV_DONTFORK);  // as Segment maps it: a fork() child does not get it
    try {
      // Only this thread touches our mapping, so nothing faults before the
      // fresh guard is in place; the old one, which counted, goes after.
      GuardedRange fresh = guard_mapping(base, kBellSegmentSize);
      ring.bell_guard = std::move(fresh);
    } catch (...) {
      return false;  // no guard slot: tried again in 10 ms (the old guard still covers the page)
    }
  }
  door->bell_cut_ = false;
  // What the cut took: the header (all zero when cut to 0 bytes) and the
  // announcements in it. A reader that touched the bell while it was cut
  // keeps a zero page of its own there (see docs/security.md).
  init_bell(*ring.bell_header());
  return true;
}

}  // namespace flowbus::detail
