// Subscriptions in the directory and the attachments reserved for them.
//
// Ordering (the start-up Dekker): a subscriber stores its subscription Ready
// (seq_cst), then scans the ring table (seq_cst loads); a ring's creator
// stores its ring slot Claiming (seq_cst), then, before the ring is Ready,
// scans the subscriptions (seq_cst loads). One of the two sees the other:
// either the creator reserves an attachment for the subscription, or the
// subscriber saw the ring while it was being created, and so treats it as
// new (joined at its start, with what was overwritten before it came counted).
#include "subscriptions.hpp"

#include <unistd.h>

#include <cstring>

#include "flowbus/detail/platform.hpp"
#include "flowbus/names.hpp"
#include "liveness.hpp"

namespace flowbus::detail {

SubscriptionHandle register_subscription(BusState& bus, std::string_view pattern) noexcept {
  if (pattern.size() >= kNameBytes) return {};
  for (uint32_t i = 0; i < kSubscriptions; ++i) {
    SubscriptionSlot& s = bus.dir->subscriptions[i];
    uint64_t w = s.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kFree) continue;
    const uint32_t epoch = SlotWord::epoch(w) + 1;
    // acq_rel: see directory_layout.hpp.
    if (!s.state.compare_exchange_strong(w, SlotWord::pack(epoch, uint32_t(bus.pid), kClaiming), std::memory_order_acq_rel))
      continue;
    s.participant = bus.participant;
    s.participant_epoch = bus.participant_epoch();
    s.uid = uint32_t(::geteuid());
    s.tag = ((epoch & 0xffff) << 16) | (i + 1);  // never 0: i + 1 >= 1
    std::memset(s.pattern, 0, kNameBytes);
    std::memcpy(s.pattern, pattern.data(), pattern.size());
    // seq_cst: the store half of the start-up Dekker (the caller scans the rings next).
    s.state.store(SlotWord::pack(epoch, 0, kReady), std::memory_order_seq_cst);
    return {i, s.tag};
  }
  return {};
}

void release_subscription(BusState& bus, SubscriptionHandle handle) noexcept {
  if (!handle.valid()) return;
  SubscriptionSlot& s = bus.dir->subscriptions[handle.index];
  uint64_t w = s.state.load(std::memory_order_acquire);
  if (SlotWord::state(w) != kReady || s.tag != handle.tag) return;  // freed by a cleanup meanwhile
  // Release: a claimer that sees Free may overwrite the fields.
  s.state.compare_exchange_strong(w, SlotWord::pack(SlotWord::epoch(w), 0, kFree), std::memory_order_release);
}

bool release_subscriptions_of(BusState& bus, uint32_t participant, uint32_t epoch) noexcept {
  bool any = false;
  for (SubscriptionSlot& s : bus.dir->subscriptions) {
    uint64_t w = s.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kReady || s.participant != participant || s.participant_epoch != (epoch & 0xff)) continue;
    any |= s.state.compare_exchange_strong(w, SlotWord::pack(SlotWord::epoch(w), 0, kFree), std::memory_order_acq_rel);
  }
  return any;
}

namespace {

// Reserving for a subscriber that may not open the ring would hold the writer
// back until the slow-consumer timeout. Group membership of another process
// is not known here: a group reader gets no reservation (it is then joined at
// the ring's start, with what was overwritten counted).
bool may_read(const SubscriptionSlot& s, const TopicInfo& topic) noexcept {
  return s.uid == 0 || s.uid == uint32_t(::geteuid()) || (topic.mode & 0004) != 0;
}

}  // namespace

uint32_t reserve_for_subscribers(BusState& bus, const TopicInfo& topic, ControlHeader* control) noexcept {
  // Under Latest nothing holds the writer: a reader of a ring made after it
  // subscribed joins at the ring's start, and counts what was overwritten.
  if (topic.policy != Policy::Block) return 0;
  // The load half of the start-up Dekker: our ring slot's Claiming store
  // (seq_cst) is ordered before these loads.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint32_t reserved = 0;
  uint32_t next = 0;
  for (const SubscriptionSlot& s : bus.dir->subscriptions) {
    if (SlotWord::state(s.state.load(std::memory_order_seq_cst)) != kReady) continue;
    const std::string_view pattern(s.pattern, strnlen(s.pattern, kNameBytes));
    if (!pattern_matches(pattern, topic.name) || !may_read(s, topic)) continue;
    if (!BusState::liveness_thunk(&bus, s.participant, s.participant_epoch)) continue;
    if (next == kAttachments) break;
    // Ours alone (.ctl is the writer's), and no reader knows the ring yet:
    // fields first, then the state (release: a reader that acquires it sees
    // the fields). The writer's recover() takes these over.
    Attachment& a = control->attachments[next++];
    const uint64_t epoch = AttachmentState::epoch(a.state.load(std::memory_order_relaxed)) + 1;
    a.subscription.store(s.tag, std::memory_order_relaxed);
    a.participant.store(reservation_participant(s.participant, s.participant_epoch), std::memory_order_relaxed);
    a.pid.store(SlotWord::who(bus.dir->participants[s.participant].state.load(std::memory_order_acquire)),
                std::memory_order_relaxed);
    a.held_from.store(0, std::memory_order_relaxed);
    a.since_ns.store(unix_now_ns(), std::memory_order_relaxed);  // tools: idle since the reservation
    a.state.store(AttachmentState::pack(epoch, AttachmentState::kReserved), std::memory_order_release);
    ++reserved;
  }
  return reserved;
}

}  // namespace flowbus::detail
