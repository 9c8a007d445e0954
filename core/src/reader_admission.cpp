#include "reader_admission.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "liveness.hpp"
#include "reader_segment.hpp"

namespace flowbus::detail {

struct ReaderAdmissions::Mapping {
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t token = 0;  // the header's token when we first admitted from it
  const uint8_t* base = nullptr;
  size_t len = 0;
  GuardedRange guard;
  uint64_t admitted = 0;  // bit i: line i is admitted (the reference count is its popcount)

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    guard.reset();  // before munmap (fault_guard.hpp): nothing may load from it after
    if (base != nullptr) ::munmap(const_cast<uint8_t*>(base), len);
  }
  bool contains(const void* p) const noexcept {
    const auto* b = static_cast<const uint8_t*>(p);
    return b >= base && b < base + len;
  }
};

static_assert(kReaderLines <= 64, "Mapping::admitted is a 64-bit mask of lines");

namespace {

/// Closes a descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string mode_bits(mode_t mode) {
  std::string bits(9, '-');
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (mode & (0400 >> i)) bits[size_t(i)] = rwx[i];
  return bits;
}

/// The effective uid of `pid` (the second field of the "Uid:" line of
/// /proc/<pid>/status), or nullopt if /proc does not say (no such process,
/// or hidepid hides it from us).
std::optional<uid_t> effective_uid(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", int(pid));
  const Fd f{::open(path, O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return std::nullopt;
  char buf[4096];
  size_t len = 0;
  while (len < sizeof buf - 1) {
    const ssize_t n = ::read(f.fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += size_t(n);
  }
  buf[len] = 0;
  const char* line = std::strstr(buf, "\nUid:");
  if (line == nullptr) return std::nullopt;
  char* end = nullptr;
  (void)std::strtoul(line + 5, &end, 10);  // real uid
  const char* euid_at = end;
  const unsigned long euid = std::strtoul(euid_at, &end, 10);
  if (end == euid_at || euid > UINT32_MAX) return std::nullopt;
  return uid_t(euid);
}

}  // namespace

ReaderAdmissions::ReaderAdmissions(const std::string& bus, uint64_t publisher_id, uint32_t ring_slot, ReaderRule rule)
    : prefix_(reader_segment_prefix(bus) + "r."), publisher_id_(publisher_id), ring_slot_(ring_slot), rule_(rule) {}

ReaderAdmissions::~ReaderAdmissions() = default;

std::optional<AdmittedReader> ReaderAdmissions::admit(const AdmissionRequest& request, std::string* why) noexcept {
  return attest(request, why, nullptr);
}

std::optional<ReaderSubscription> ReaderAdmissions::subscription_of(uint32_t pid, uint32_t n,
                                                                    std::string* why) noexcept {
  ReaderSubscription found;
  std::optional<AdmittedReader> who = attest({0, pid, n, kNoLine}, why, &found);
  if (!who) return std::nullopt;
  found.who = *who;
  return found;
}

std::optional<AdmittedReader> ReaderAdmissions::attest(const AdmissionRequest& request, std::string* why,
                                                       ReaderSubscription* subscription) noexcept {
  Mapping* mapping = nullptr;
  std::string name;
  auto refuse = [&](const std::string& reason) -> std::optional<AdmittedReader> {
    if (mapping != nullptr) drop_if_unused(mapping);
    if (why != nullptr) {
      try {
        *why = "reader segment ";
        why->append(name).append(": ").append(reason);
      } catch (...) {
        why->clear();  // out of memory: refused all the same
      }
    }
    return std::nullopt;
  };
  try {
    // 1. The name, from the request's numbers only; nonsense costs no syscall.
    name = prefix_ + std::to_string(request.pid) + "." + std::to_string(request.n);
    if (request.pid == 0 || request.pid > uint32_t(INT_MAX))
      return refuse("pid " + std::to_string(request.pid) + " is no process");
    if (request.line >= kReaderLines && request.line != kNoLine)
      return refuse("line " + std::to_string(request.line) + " is past its " + std::to_string(kReaderLines) + " lines");
    if (request.token == 0 && subscription == nullptr) return refuse("token 0 is no segment's");

    // 2. Open it without following a link, and without blocking on a FIFO
    // someone put under that name; then ask the kernel who owns it.
    const std::string path = "/dev/shm/" + name;
    const Fd f{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)};
    if (f.fd < 0) {
      const int err = errno;
      return refuse(err == ELOOP ? std::string("is a symbolic link")
                                 : std::string("cannot open: ") + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) return refuse(std::string("fstat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
    if (st.st_size < off_t(sizeof(ReaderHeader)))
      return refuse("holds " + std::to_string(st.st_size) + " bytes, less than a reader segment's " +
                    std::to_string(sizeof(ReaderHeader)));
    if (st.st_mode & 0022)
      return refuse("mode " + mode_bits(st.st_mode) + " lets others write it (a reader segment is rw-r-----)");
    // A non-root process can give its file only a group it is in (fchown):
    // st_gid == the topic's group is the kernel's word that the owner is in it.
    // The writer's own uid reads what it writes (a member publishing on a
    // 0660 topic it does not own).
    const bool may_read = st.st_uid == 0 || st.st_uid == rule_.owner_uid || st.st_uid == ::geteuid() ||
                          (rule_.group >= 0 && int64_t(st.st_gid) == rule_.group) || (rule_.mode & 0004) != 0;
    if (!may_read)
      return refuse("owner uid " + std::to_string(st.st_uid) + ", group " + std::to_string(st.st_gid) +
                    ": may not read this topic (owner uid " + std::to_string(rule_.owner_uid) + ", group " +
                    (rule_.group >= 0 ? std::to_string(rule_.group) : std::string("none")) + ", mode " +
                    mode_bits(rule_.mode) + ")");

    // 3. Map it read-only, through the fault guard (its owner may truncate
    // it), or reuse our mapping of that very file (same inode, same token)
    // unless a truncation damaged that one.
    for (const std::unique_ptr<Mapping>& m : mappings_)
      if (m->dev == st.st_dev && m->ino == st.st_ino && m->token == request.token && request.token != 0 &&
          !m->guard.damaged()) {
        mapping = m.get();
        break;
      }
    if (mapping == nullptr) {
      const size_t page = size_t(::sysconf(_SC_PAGESIZE));
      const size_t len = (sizeof(ReaderHeader) + page - 1) / page * page;
      auto m = std::make_unique<Mapping>();
      mappings_.reserve(mappings_.size() + 1);  // nothing below throws before ~Mapping owns the mapping
      void* base = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, f.fd, 0);
      if (base == MAP_FAILED) return refuse(std::string("mmap: ") + std::strerror(errno));
      m->dev = st.st_dev;
      m->ino = st.st_ino;
      m->token = request.token;
      m->base = static_cast<const uint8_t*>(base);
      m->len = len;  // unmapped by ~Mapping from here on, even if guard_mapping throws (refused below)
      mappings_.push_back(std::move(m));
      mapping = mappings_.back().get();
      mapping->guard = guard_mapping(base, len);
    }

    // 4. The header. Acquire, paired with the release store of the magic in
    // ReaderSegment::create: the fields below were written before it.
    const auto* h = reinterpret_cast<const ReaderHeader*>(mapping->base);
    if (h->magic.load(std::memory_order_acquire) != kReaderMagic) return refuse("is no reader segment (magic)");
    // Each field read once, into our memory: its owner may change it under us.
    const uint32_t version = h->layout_version, lines = h->lines;
    const uint64_t token = h->token, pid = h->pid, start_time = h->start_time;
    if (version != kLayoutVersion)
      return refuse("layout version " + std::to_string(version) + ", we speak " + std::to_string(kLayoutVersion));
    if (lines != kReaderLines)
      return refuse("holds " + std::to_string(lines) + " lines, not " + std::to_string(kReaderLines));
    if (pid != request.pid) return refuse("belongs to pid " + std::to_string(pid) + ", not the announced one");
    if (token != request.token && subscription == nullptr)
      return refuse("token differs from the announced one (a later segment of that name?)");
    if (start_time == 0) return refuse("gives no start time for its process");

    // 5. Its process lives, and runs as the segment's owner: a segment made
    // under a victim's pid by another uid is not the victim's. The euid is
    // read first, then the start time checked: a process alive now with that
    // start time held the pid when we read its euid.
    const std::optional<uid_t> euid = effective_uid(pid_t(request.pid));
    if (!euid) return refuse("its process " + std::to_string(request.pid) + " is gone or hidden from us (/proc)");
    if (!process_alive(pid_t(request.pid), start_time))
      return refuse("its process " + std::to_string(request.pid) + " (start time " + std::to_string(start_time) +
                    ") is gone");
    if (*euid != st.st_uid)
      return refuse("owner uid " + std::to_string(st.st_uid) + ", but process " + std::to_string(request.pid) +
                    " runs as uid " + std::to_string(*euid));

    // No line: the request asks only who it is, and what subscription its
    // segment records (subscription_of: a ring's creator, or a writer
    // checking that a reservation's subscription lives).
    if (request.line == kNoLine) {
      if (subscription != nullptr) {
        // Relaxed: written before the magic (acquired above), never changed.
        subscription->tag = h->subscription.load(std::memory_order_relaxed);
        subscription->pattern.assign(h->pattern, strnlen(h->pattern, kPatternBytes));
        if (subscription->tag == 0) return refuse("holds no subscription");
        for (const CursorLine& line : h->line) {
          // Acquire, paired with the reader's release store of kLineGivenUp
          // (RingReader::give_up): the key it stored before is seen below.
          if (line.position.load(std::memory_order_acquire) != kLineGivenUp) continue;
          // Relaxed: ordered after the acquire load above.
          if (line.publisher_id.load(std::memory_order_relaxed) == publisher_id_ &&
              line.ring_slot.load(std::memory_order_relaxed) == ring_slot_)
            subscription->gave_up_our_ring = true;
        }
      }
      AdmittedReader who;
      who.token = token;
      who.pid = request.pid;
      who.uid = st.st_uid;
      who.n = request.n;
      who.line_index = kNoLine;
      who.start_time = start_time;
      who.ino = uint64_t(st.st_ino);
      drop_if_unused(mapping);
      return who;
    }

    // 6. The line: the reader stores its key, then its position (release,
    // RingReader::store_cursor; ReaderSegment::claim_line stores the key).
    // Acquire, paired with those release stores of position: the key loads
    // below see the key written before the position we read (a key of 0
    // means it left meanwhile: refused as not ours).
    const CursorLine& line = h->line[request.line];
    const uint64_t position = line.position.load(std::memory_order_acquire);
    // Relaxed: ordered after the acquire load above.
    const uint64_t key_publisher = line.publisher_id.load(std::memory_order_relaxed);
    const uint32_t key_slot = line.ring_slot.load(std::memory_order_relaxed);
    if (key_publisher != publisher_id_ || key_slot != ring_slot_)
      return refuse("line " + std::to_string(request.line) + " reads ring (" + std::to_string(key_publisher) + ", " +
                    std::to_string(key_slot) + "), not ours (" + std::to_string(publisher_id_) + ", " +
                    std::to_string(ring_slot_) + ")");
    if (position == kLineLeft) return refuse("line " + std::to_string(request.line) + " has left our ring");
    if (mapping->guard.damaged()) return refuse("was cut short under us");
    const uint64_t bit = uint64_t(1) << request.line;
    if (mapping->admitted & bit) return refuse("line " + std::to_string(request.line) + " is admitted already");

    mapping->admitted |= bit;
    AdmittedReader reader;
    reader.line = &line;
    reader.token = token;
    reader.pid = request.pid;
    reader.uid = st.st_uid;
    reader.n = request.n;
    reader.line_index = request.line;
    reader.start_time = start_time;
    reader.ino = uint64_t(st.st_ino);
    // Relaxed: written before the magic (acquired above), never changed.
    reader.subscription = h->subscription.load(std::memory_order_relaxed);
    reader.guard_ = &mapping->guard;
    return reader;
  } catch (const std::exception& e) {
    return refuse(std::string("not admitted: ") + e.what());
  } catch (...) {
    return refuse("not admitted: unknown error");
  }
}

void ReaderAdmissions::release(const AdmittedReader& reader) noexcept {
  if (reader.line == nullptr || reader.line_index >= kReaderLines) return;
  for (const std::unique_ptr<Mapping>& m : mappings_)
    if (m->contains(reader.line)) {
      m->admitted &= ~(uint64_t(1) << reader.line_index);
      drop_if_unused(m.get());
      return;
    }
}

void ReaderAdmissions::drop_if_unused(Mapping* mapping) noexcept {
  if (mapping->admitted != 0) return;
  for (auto it = mappings_.begin(); it != mappings_.end(); ++it)
    if (it->get() == mapping) {
      mappings_.erase(it);  // ~Mapping: unguard, then munmap
      return;
    }
}

}  // namespace flowbus::detail
