#include "writer_door.hpp"

#include <algorithm>
#include <vector>

#include "bus_state.hpp"
#include "liveness.hpp"

namespace flowbus::detail {

ReaderRule reader_rule(const TopicInfo& topic) noexcept {
  return ReaderRule{uint32_t(topic.owner_uid < 0 ? 0 : topic.owner_uid), topic.group, topic.mode};
}

WriterDoor::WriterDoor(const BusState& bus, const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot)
    : admissions_(bus.name, publisher_id, ring_slot, reader_rule(topic)) {}

ReaderDoor WriterDoor::door() noexcept {
  ReaderDoor d;
  d.context = this;
  d.admit = &WriterDoor::admit;
  d.release = &WriterDoor::release;
  d.damaged = &WriterDoor::damaged;
  d.alive = &WriterDoor::alive;
  d.subscription_alive = &WriterDoor::subscription_alive;
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

}  // namespace flowbus::detail
