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
struct RingSegments;

/// Who may read `topic`'s rings: the rule a reader segment is attested against.
ReaderRule reader_rule(const TopicInfo& topic) noexcept;

/// Owned by the writer's RingSegments (a stable address: ReaderDoor keeps a
/// pointer to it). Thread: the writer's only.
class WriterDoor {
 public:
  /// `ring`: the segments of the writer's ring, which own this door.
  WriterDoor(const BusState& bus, const TopicInfo& topic, RingSegments& ring);
  ~WriterDoor();
  WriterDoor(const WriterDoor&) = delete;
  WriterDoor& operator=(const WriterDoor&) = delete;
  /// The function table RingWriter calls through.
  ReaderDoor door() noexcept;

 private:
  static bool admit(void* self, const ReaderAnnouncement& announcement, FollowedReader& out) noexcept;
  static void release(void* self, const FollowedReader& reader) noexcept;
  static bool damaged(void* self, const FollowedReader& reader) noexcept;
  static bool alive(void* self, uint32_t pid, uint64_t start_time) noexcept;
  static bool subscription_alive(void* self, const FollowedReader& reservation, uint32_t tag) noexcept;
  static bool repair_bell(void* self) noexcept;

  RingSegments& ring_;
  // The bell's file, opened once with the ring: never looked up by name
  // again, which a process that may unlink it could point elsewhere.
  int bell_fd_ = -1;
  bool bell_cut_ = false;                 // the bell was cut short and is not known to be whole again
  uint64_t next_bell_repair_ns_ = 0;      // monotonic: a repair that failed is tried again then
  uint64_t next_bell_size_check_ns_ = 0;  // monotonic: a cut within the page faults nobody, so its size is looked at

  ReaderAdmissions admissions_;
  // What the writer follows, one entry per admitted reader (FollowedReader::segment points here).
  std::vector<std::unique_ptr<AdmittedReader>> followed_;
};

}  // namespace flowbus::detail
