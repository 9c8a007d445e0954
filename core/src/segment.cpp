#include "segment.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sys/mman.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>

#include "flowbus/error.hpp"

namespace flowbus::detail {

namespace bip = boost::interprocess;

namespace {

std::string shm_path(const std::string& name) { return "/dev/shm/" + name; }

[[noreturn]] void throw_os(const std::string& what, const std::string& name, int err) {
  if (err == EACCES || err == EPERM)
    throw Error(ErrorCode::PermissionDenied,
                what + " '" + name + "': permission denied (" + describe_owner_and_mode(name) +
                    "); ask its owner to add you to the topic's group or to widen its --mode");
  if (err == ENOSPC || err == ENOMEM)
    throw Error(ErrorCode::NoSpace, what + " '" + name + "': /dev/shm is full; free space with `flowbus gc` or use a smaller --ring-size");
  if (err == ENOENT) throw Error(ErrorCode::NotFound, what + " '" + name + "': no such segment");
  if (err == EEXIST) throw Error(ErrorCode::AlreadyExists, what + " '" + name + "': already exists");
  throw Error(ErrorCode::System, what + " '" + name + "': " + std::strerror(err));
}

int error_of(const bip::interprocess_exception& e) {
  const int native = e.get_native_error();
  if (native != 0) return native;
  switch (e.get_error_code()) {
    case bip::already_exists_error: return EEXIST;
    case bip::not_found_error: return ENOENT;
    case bip::security_error: return EACCES;
    case bip::out_of_space_error: return ENOSPC;
    default: return EIO;
  }
}

}  // namespace

Segment::Segment() = default;
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

Segment Segment::create(const std::string& name, uint64_t size, uint32_t mode, int64_t group) {
  // Refuse before touching memory when /dev/shm plainly cannot hold it:
  // fallocate on tmpfs would first eat the machine's memory, then fail.
  struct statvfs fs{};
  if (statvfs("/dev/shm", &fs) == 0 && uint64_t(fs.f_bavail) * fs.f_frsize < size)
    throw Error(ErrorCode::NoSpace, "cannot create '" + name + "': /dev/shm has " +
                                        std::to_string(uint64_t(fs.f_bavail) * fs.f_frsize >> 20) + " MiB free, " +
                                        std::to_string(size >> 20) + " MiB needed; free space with `flowbus gc` or use a smaller --ring-size");
  Segment seg;
  try {
    bip::permissions perms(static_cast<int>(mode));  // a mode is at most 07777
    bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write, perms);
    const int fd = shm.get_mapping_handle().handle;
    // The umask may have cut bits from `mode`: set it explicitly.
    if (::fchmod(fd, mode) != 0) {
      const int err = errno;
      bip::shared_memory_object::remove(name.c_str());
      throw_os("cannot set the mode of", name, err);
    }
    if (group >= 0 && ::fchown(fd, uid_t(-1), gid_t(group)) != 0) {
      const int err = errno;
      bip::shared_memory_object::remove(name.c_str());
      throw_os("cannot give group " + std::to_string(group) + " to", name, err);
    }
    const int rc = ::posix_fallocate(fd, 0, off_t(size));
    if (rc != 0) {
      bip::shared_memory_object::remove(name.c_str());
      throw_os("cannot reserve " + std::to_string(size) + " bytes for", name, rc);
    }
    seg.region_ = std::make_unique<bip::mapped_region>(shm, bip::read_write, 0, size);
  } catch (const bip::interprocess_exception& e) {
    throw_os("cannot create", name, error_of(e));
  }
  seg.data_ = static_cast<uint8_t*>(seg.region_->get_address());
  seg.keep_from_fork_children();
  seg.size_ = size;
  seg.name_ = name;
  return seg;
}

Segment Segment::open(const std::string& name, Access access, uint64_t min_size) {
  Segment seg;
  try {
    const auto mode = access == Access::ReadOnly ? bip::read_only : bip::read_write;
    bip::shared_memory_object shm(bip::open_only, name.c_str(), mode);
    bip::offset_t size = 0;
    if (!shm.get_size(size)) throw_os("cannot size", name, EIO);
    if (uint64_t(size) < min_size || size == 0)
      // No advice here: whether that is damage or a creator still at work is
      // for the caller to say (a directory is linked in whole; a ring may be
      // being made anew under a slot that was freed).
      throw Error(ErrorCode::Corrupt, "segment '" + name + "' is " + std::to_string(size) + " bytes, smaller than its " +
                                          std::to_string(min_size) + "-byte header");
    seg.region_ = std::make_unique<bip::mapped_region>(shm, mode, 0, size_t(size));
    seg.size_ = uint64_t(size);
  } catch (const bip::interprocess_exception& e) {
    throw_os("cannot open", name, error_of(e));
  }
  seg.data_ = static_cast<uint8_t*>(seg.region_->get_address());
  seg.keep_from_fork_children();
  seg.name_ = name;
  return seg;
}

void Segment::prefault() const noexcept {
  if (data_ == nullptr || size_ == 0) return;
  const bool writable = region_->get_mode() == bip::read_write;
  if (::madvise(data_, size_, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return;
  // Kernels before 5.14: touch each page (a read maps it; a writer's first
  // write still faults once, which is no worse than without this).
  for (uint64_t off = 0; off < size_; off += 4096) (void)*static_cast<volatile const uint8_t*>(data_ + off);
}

bool Segment::exists(const std::string& name) {
  struct stat st{};
  return ::stat(shm_path(name).c_str(), &st) == 0;
}

bool Segment::remove(const std::string& name) noexcept {
  return bip::shared_memory_object::remove(name.c_str());
}

bool Segment::publish_as(const std::string& name) {
  const int rc = ::link(shm_path(name_).c_str(), shm_path(name).c_str());
  const int err = errno;
  remove(name_);
  if (rc == 0) {
    name_ = name;
    return true;
  }
  if (err == EEXIST) return false;
  throw Error(ErrorCode::System, "cannot create '" + name + "': link from '" + name_ + "': " + std::strerror(err));
}

bool in_group(gid_t group) noexcept {
  if (::getegid() == group) return true;
  gid_t groups[256];
  const int n = ::getgroups(256, groups);
  for (int i = 0; i < n; ++i)
    if (groups[i] == group) return true;
  return false;
}

std::vector<std::string> list_shm_segments() {
  std::vector<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d))
      if (std::strncmp(e->d_name, "flowbus.", 8) == 0) out.emplace_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

std::string describe_owner_and_mode(const std::string& segment_name) {
  struct stat st{};
  if (::stat(shm_path(segment_name).c_str(), &st) != 0) return "owner unknown";
  char bits[10];
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) bits[i] = (st.st_mode & (0400 >> i)) ? rwx[i] : '-';
  bits[9] = 0;
  std::string owner = std::to_string(st.st_uid);
  if (const passwd* pw = ::getpwuid(st.st_uid)) owner += std::string(" (") + pw->pw_name + ")";
  std::string group = std::to_string(st.st_gid);
  if (const ::group* gr = ::getgrgid(st.st_gid)) group += std::string(" (") + gr->gr_name + ")";
  return std::string(bits) + ", owner uid " + owner + ", group " + group;
}

void Segment::keep_from_fork_children() noexcept {
  // Page-aligned by mmap; a refusal (an old kernel) only loses this defence.
  if (region_ && region_->get_size() != 0) (void)::madvise(region_->get_address(), region_->get_size(), MADV_DONTFORK);
}

}  // namespace flowbus::detail
