// The ring writer's door to its readers (ring.hpp, ReaderDoor): admission of
// announced readers through the kernel (reader_admission.hpp), and liveness
// of readers and of the subscriptions reservations were made for.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "flowbus/detail/ring.hpp"
#include "reader_admission.hpp"

namespace flowbus::detail {

struct BusState;

/// Who may read `topic`'s rings: the rule a reader segment is attested against.
ReaderRule reader_rule(const TopicInfo& topic) noexcept;

/// Owned by the writer's RingSegments (a stable address: ReaderDoor keeps a
/// pointer to it). Thread: the writer's only.
class WriterDoor {
 public:
  WriterDoor(const BusState& bus, const TopicInfo& topic, uint64_t publisher_id, uint32_t ring_slot);
  /// The function table RingWriter calls through.
  ReaderDoor door() noexcept;

 private:
  static bool admit(void* self, const ReaderAnnouncement& announcement, FollowedReader& out) noexcept;
  static void release(void* self, const FollowedReader& reader) noexcept;
  static bool damaged(void* self, const FollowedReader& reader) noexcept;
  static bool alive(void* self, uint32_t pid, uint64_t start_time) noexcept;
  static bool subscription_alive(void* self, const FollowedReader& reservation, uint32_t tag) noexcept;

  ReaderAdmissions admissions_;
  // What the writer follows, one entry per admitted reader (FollowedReader::segment points here).
  std::vector<std::unique_ptr<AdmittedReader>> followed_;
};

}  // namespace flowbus::detail
