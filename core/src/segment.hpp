// A named shared-memory segment (Boost.Interprocess), created with an exact
// mode whatever the umask, with its space reserved up front so that a full
// /dev/shm is an error at create time rather than a SIGBUS later.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace boost::interprocess { class mapped_region; }

namespace flowbus::detail {

enum class Access { ReadOnly, ReadWrite };

class Segment {
 public:
  /// Creates `name` exclusively. Throws AlreadyExists if it exists, NoSpace if
  /// /dev/shm cannot hold `size` bytes, PermissionDenied, System.
  static Segment create(const std::string& name, uint64_t size, uint32_t mode, int64_t group);
  /// Opens an existing segment. Throws NotFound, PermissionDenied (naming the
  /// owner and mode), Corrupt if it is smaller than `min_size`.
  static Segment open(const std::string& name, Access access, uint64_t min_size = 0);
  static bool exists(const std::string& name);
  /// Removes the name; mappings stay valid. False if it did not exist.
  static bool remove(const std::string& name) noexcept;
  /// Gives this segment, created under a temporary name, its real `name` in
  /// one step (a hard link, then the temporary name is removed), so that
  /// others never see it half made. False, and nothing changed but the
  /// temporary name gone, if `name` exists already. Throws System otherwise.
  bool publish_as(const std::string& name);

  Segment();
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  /// Maps every page now (MADV_POPULATE_*), so the hot path never takes a
  /// page fault: without it each process faults once per 4 KiB of a ring's
  /// first lap, a microsecond each. Costs about a millisecond per 4 MiB.
  void prefault() const noexcept;

  uint8_t* data() const noexcept { return data_; }
  uint64_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }

 private:
  /// A fork() child does not get this mapping (MADV_DONTFORK): the handles
  /// it inherits are refused (fork_guard.hpp), and a stray write through one
  /// (a loaned builder) faults in the child instead of landing in the
  /// parent's ring.
  void keep_from_fork_children() noexcept;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::string name_;
};

/// Whether this process is in group `group` (its effective or a supplementary group).
bool in_group(gid_t group) noexcept;

/// Names of every segment in /dev/shm that starts with "flowbus.".
std::vector<std::string> list_shm_segments();

/// "rw-r-----, owner uid 1000 (alice), group 100 (users)" for messages.
std::string describe_owner_and_mode(const std::string& segment_name);

}  // namespace flowbus::detail
