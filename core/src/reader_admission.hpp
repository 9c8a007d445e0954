// Admission of a reader by a ring's writer (least privilege, step 6; see
// docs/proposals/least-privilege.md, section 3, "Writer, refresh_limit",
// step 3): turns an untrusted announcement (a copy of a bell slot: token,
// pid, n, line) into an attested reader line, mapped read-only through the
// fault guard, whose position the writer then reads at each limit refresh.
//
// Cold path: a shm_open, an fstat, an mmap (unless that segment is mapped
// already), and two /proc reads per admission.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fault_guard.hpp"
#include "flowbus/detail/layout.hpp"

namespace flowbus::detail {

/// A copy of a bell slot: untrusted, anyone who may write the bell may forge it.
struct AdmissionRequest {
  uint64_t token = 0;  // the reader segment's token (its header says it)
  uint32_t pid = 0;    // with n: the segment "flowbus.<bus>~r.<pid>.<n>"
  uint32_t n = 0;
  uint32_t line = 0;  // the line index in that segment, < kReaderLines
};

/// Who may read the ring's topic: the writer admits only readers that could
/// open its data segment (owner `owner_uid`, group `group`, mode `mode`).
struct ReaderRule {
  uint32_t owner_uid = 0;  // the data segment's owner (the writer's euid)
  int64_t group = -1;      // the topic's group; -1: none
  uint32_t mode = 0600;    // the topic's mode, e.g. 0640
};

/// An admitted reader as the writer keeps it, in its PRIVATE memory: every
/// field but `line` was checked at admission and is never re-read from
/// shared memory. Valid until released (or its ReaderAdmissions destroyed).
struct AdmittedReader {
  const CursorLine* line = nullptr;  // in the read-only, fault-guarded mapping
  uint64_t token = 0;
  uint32_t pid = 0;
  uint32_t uid = 0;  // the segment's owner (st_uid), which is the reader's euid
  uint32_t n = 0;
  uint32_t line_index = 0;
  uint64_t start_time = 0;    // the reader's start time (its header's, checked against /proc)
  uint64_t ino = 0;           // the segment's inode at admission
  uint32_t subscription = 0;  // the tag its Subscriber wrote in its header (fixed before the file was linked)

  /// The segment was cut short under us (the fault guard repaired a page of
  /// it: `line` may read 0 from now on): treat the reader as evicted.
  bool damaged() const noexcept { return guard_ != nullptr && guard_->damaged(); }

 private:
  friend class ReaderAdmissions;
  const GuardedRange* guard_ = nullptr;  // its mapping's, owned by the ReaderAdmissions
};

/// A subscription found in a reader segment's header, with who holds it.
struct ReaderSubscription {
  AdmittedReader who;  // its line is null: nothing stays mapped
  uint32_t tag = 0;    // nonzero
  std::string pattern;
  // A line of the segment says it gave up the reservation on the asking
  // writer's ring (kLineGivenUp, keyed to it): the bell that announced it
  // may have been erased or full, and the line is what the writer believes.
  bool gave_up_our_ring = false;
};

/// One per ring writer. Not thread-safe: the writer's thread only.
class ReaderAdmissions {
 public:
  ReaderAdmissions(const std::string& bus, uint64_t publisher_id, uint32_t ring_slot, ReaderRule rule);
  /// Unmaps every segment: no AdmittedReader of it may be used after.
  ~ReaderAdmissions();
  ReaderAdmissions(const ReaderAdmissions&) = delete;
  ReaderAdmissions& operator=(const ReaderAdmissions&) = delete;

  /// Validates `request` (every check in reader_admission.cpp's admit) and
  /// returns the admitted reader; or nullopt, with `why` set (for tools and
  /// tests) if given. A request with line kNoLine asks only who the reader
  /// is: every check but the line's, and nothing stays mapped (`line` is
  /// null, nothing to release). A line that is admitted already (and not
  /// released) is refused: one announcement, replayed, takes one attachment.
  std::optional<AdmittedReader> admit(const AdmissionRequest& request, std::string* why = nullptr) noexcept;

  /// The subscription recorded in reader segment "…~r.<pid>.<n>", attested
  /// as admit() attests a reader (every check but the token's and the
  /// line's); nullopt, with `why` set if given, if a check fails or the
  /// segment holds no subscription (none, or its Subscriber closed).
  std::optional<ReaderSubscription> subscription_of(uint32_t pid, uint32_t n, std::string* why = nullptr) noexcept;

  /// The writer no longer follows this reader's line: unmaps its segment
  /// once no admitted line uses it. Releasing twice is harmless.
  void release(const AdmittedReader& reader) noexcept;

  /// How many reader segments are mapped (tests).
  size_t mapped_segments() const noexcept { return mappings_.size(); }

 private:
  struct Mapping;
  // admit() and subscription_of(): with `subscription`, any token is taken
  // and the header's subscription read.
  std::optional<AdmittedReader> attest(const AdmissionRequest& request, std::string* why,
                                       ReaderSubscription* subscription) noexcept;
  void drop_if_unused(Mapping* mapping) noexcept;

  std::string prefix_;  // reader_segment_prefix(bus) + "r."
  uint64_t publisher_id_;
  uint32_t ring_slot_;
  ReaderRule rule_;
  std::vector<std::unique_ptr<Mapping>> mappings_;  // stable addresses: AdmittedReader points at their guards
};

}  // namespace flowbus::detail
