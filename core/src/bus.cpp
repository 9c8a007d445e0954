// The bus directory: participants, topics and rings, changed only by CAS on
// slot state words, and the Bus handle. The memory-ordering rules for every
// directory word are stated once, in directory_layout.hpp.
#include "flowbus/bus.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "bus_state.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "flowbus/schema.hpp"
#include "liveness.hpp"
#include "reader_segment.hpp"

namespace flowbus {
namespace detail {

namespace {

/// "4MiB", "1TiB", "100 bytes": exact, in the units `--ring-size` takes.
std::string size_text(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = 1ull << (40 - 10 * i);
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes / unit) + kUnits[i];
  }
  return std::to_string(bytes) + " bytes";
}

/// "5s", "200ms", "never": as the command line takes durations.
std::string duration_text(std::chrono::nanoseconds d) {
  if (d == kNever) return "never";
  static constexpr std::pair<int64_t, const char*> kUnits[] = {{1'000'000'000, "s"}, {1'000'000, "ms"}, {1'000, "us"}};
  for (const auto& [unit, name] : kUnits)
    if (d.count() % unit == 0) return std::to_string(d.count() / unit) + name;
  return std::to_string(d.count()) + "ns";
}

/// "23.9GiB": free space, which is no round number.
std::string approximate_size_text(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1fGiB", double(bytes) / double(1ull << 30));
  else std::snprintf(buf, sizeof buf, "%.1fMiB", double(bytes) / double(1ull << 20));
  return buf;
}

std::string mode_text(uint32_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

void copy_name(char* dst, size_t cap, const std::string& src) {
  std::memset(dst, 0, cap);  // NUL-padded: the copy below leaves the last byte 0
  src.copy(dst, cap - 1);
}


}  // namespace

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

RingContext make_ring_context(const std::string& host, const std::string& bus, const TopicInfo& topic,
                              const std::string& publisher, uint64_t publisher_id) {
  RingContext c;
  c.topic = topic.name;
  c.publisher_name = publisher;
  c.publisher_id = publisher_id;
  c.source = "flowbus://" + host + "/" + bus + "/" + publisher;
  c.type = topic.type;
  c.dataschema = "flowbus:schema/" + topic.schema_id;
  c.datacontenttype = "application/x-flatbuffers";
  return c;
}

void apply_mirror_origin(RingContext& c, const RingSlot& slot) {
  if ((slot.flags & kRingMirror) == 0) return;
  c.origin_node = read_name(slot.origin_node, kNodeNameBytes);
  c.source = read_name(slot.origin_source, kSourceBytes);
}

std::string directory_segment_name(const std::string& bus) { return "flowbus." + bus; }

namespace {

// A directory is made whole under a draft name and linked into place, so one
// too small to hold its header is damaged, never half made.
[[noreturn]] void throw_damaged_directory(const std::string& bus, const Error& e) {
  throw Error(ErrorCode::Corrupt, "bus '" + bus + "': " + e.what() + "; it is damaged: remove it with `flowbus gc --force " + bus + "`");
}

}  // namespace

Segment open_directory_read_only(const std::string& bus) {
  validate_bus_name(bus);
  try {
    return Segment::open(directory_segment_name(bus), Access::ReadOnly, sizeof(DirectoryHeader));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound)
      throw Error(ErrorCode::NotFound, "bus '" + bus + "' does not exist on this host; `flowbus inspect` lists the buses there are");
    if (e.code() == ErrorCode::Corrupt) throw_damaged_directory(bus, e);
    throw;
  }
}
std::string data_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher) {
  // Publisher names hold no '.', so "@<publisher>" and "@<publisher>.ctl" never collide.
  return "flowbus." + bus + "." + topic + "@" + publisher;
}
std::string control_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher) {
  return data_segment_name(bus, topic, publisher) + ".ctl";
}
std::string bell_segment_name(const std::string& bus, const std::string& topic, const std::string& publisher) {
  return data_segment_name(bus, topic, publisher) + ".bell";
}
std::vector<std::string> ring_segment_names(const std::string& bus, const std::string& topic,
                                            const std::string& publisher) {
  return {data_segment_name(bus, topic, publisher), control_segment_name(bus, topic, publisher),
          bell_segment_name(bus, topic, publisher)};
}

void guard_bell(RingSegments& ring) {
  ring.bell_guard = guard_mapping(ring.bell.data(), kBellSegmentSize);
  struct stat st {};
  // The mode says who else may write it; its owner is the ring's writer (or
  // the writer's uid), trusted with the ring anyway.
  ring.bell_shared = ::stat(("/dev/shm/" + ring.bell.name()).c_str(), &st) != 0 || (st.st_mode & 0022) != 0;
}

void init_bell(BellHeader& bell) noexcept {
  bell.layout_version = kLayoutVersion;
  bell.slot_count = kBellSlots;
  bell.magic.store(kBellMagic, std::memory_order_release);  // written last: openers acquire it
}

/// A ring's last publish (or `created_ns`) from its data segment alone; 0
/// when that cannot be read either.
static uint64_t last_publish_in_data(const std::string& bus, const std::string& topic, const std::string& publisher,
                                     uint64_t created_ns) noexcept {
  try {
    const Segment data = Segment::open(data_segment_name(bus, topic, publisher), Access::ReadOnly, kRecordsOffset);
    const RingHeader* h = reinterpret_cast<const RingHeader*>(data.data());
    // Acquire: pairs with the creator's release store of magic.
    if (h->magic.load(std::memory_order_acquire) != kRingMagic) return 0;
    return std::max(created_ns, h->last_publish_ns.load(std::memory_order_relaxed));
  } catch (...) {
    return 0;
  }
}

/// Gives a bell cut short its page back (the writer's, before it opens it).
static void restore_bell_size(const std::string& bell_name) {
  const int fd = ::shm_open(("/" + bell_name).c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) return;  // Segment::open says why
  struct stat st {};
  if (::fstat(fd, &st) == 0 && uint64_t(st.st_size) < kBellSegmentSize)
    (void)::posix_fallocate(fd, 0, off_t(kBellSegmentSize));  // refused: Segment::open reports the size
  ::close(fd);
}

void open_ring_segments(RingSegments& ring, const std::string& bus, const std::string& topic,
                        const std::string& publisher, Access data_access, Access control_access, Access bell_access) {
  const std::string data_name = data_segment_name(bus, topic, publisher);
  ring.data = Segment::open(data_name, data_access, kRecordsOffset);
  const RingHeader* h = ring.header();
  // Acquire: pairs with the creator's release store of magic (written last).
  const uint64_t magic = h->magic.load(std::memory_order_acquire);
  if (magic != kRingMagic)
    throw Error(magic == 0 ? ErrorCode::NotFound : ErrorCode::Corrupt,
                "ring '" + data_name + (magic == 0 ? "' is still being created; try again"
                                                   : "' has no valid magic: it is damaged; remove it with `flowbus gc --force " + bus + "`"));
  if (h->layout_version != kLayoutVersion)
    throw Error(ErrorCode::VersionMismatch,
                "ring '" + data_name + "' has layout version " + std::to_string(h->layout_version) +
                    ", this flowbus speaks version " + std::to_string(kLayoutVersion) +
                    ": stop its processes and remove the bus with `flowbus gc --force " + bus + "`, or use a matching flowbus");
  const uint64_t cap = h->capacity;
  if (cap < kMinCapacity || (cap & (cap - 1)) != 0 || ring.data.size() < kRecordsOffset + cap)
    throw Error(ErrorCode::Corrupt, "ring '" + data_name + "' claims capacity " + std::to_string(cap) +
                                        " which its segment of " + std::to_string(ring.data.size()) +
                                        " bytes cannot hold: it is damaged");
  const std::string ctl_name = control_segment_name(bus, topic, publisher);
  ring.control = Segment::open(ctl_name, control_access, sizeof(ControlHeader));
  const ControlHeader* c = ring.control_header();
  if (c->magic.load(std::memory_order_acquire) != kControlMagic)
    throw Error(ErrorCode::Corrupt, "control segment '" + ctl_name + "' has no valid magic: it is damaged");
  if (c->layout_version != kLayoutVersion)
    throw Error(ErrorCode::VersionMismatch, "control segment '" + ctl_name + "' has layout version " +
                                                std::to_string(c->layout_version) + ", this flowbus speaks version " +
                                                std::to_string(kLayoutVersion));
  const std::string bell_name = bell_segment_name(bus, topic, publisher);
  // The writer (taking a ring over) owns the bell: a reader may have cut it
  // short, so it gets its page back first, and its header below.
  const bool writer = control_access == Access::ReadWrite;
  if (writer) restore_bell_size(bell_name);
  // Readers may write the bell, so whatever is wrong with it is theirs and
  // its writer's to mend: readers are told to look again (NotFound), never
  // that the ring is damaged.
  const std::string cut = "bell segment '" + bell_name +
                          "' is cut short or scribbled on (a process that may write it did); its writer makes it "
                          "whole again at its next limit refresh, a new writer as it takes the ring over: try again "
                          "(with no writer, `flowbus gc` removes the ring once its retention has passed)";
  try {
    ring.bell = Segment::open(bell_name, bell_access, kBellSegmentSize);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::Corrupt && !writer)
      throw Error(ErrorCode::NotFound, cut);  // too short: subscribers retry
    throw;
  }
  guard_bell(ring);  // before the first load: a reader may have truncated it since our size check
  BellHeader* b = ring.bell_header();
  const uint64_t bell_magic = b->magic.load(std::memory_order_acquire);
  if (bell_magic != kBellMagic || b->layout_version != kLayoutVersion) {
    if (!writer) throw Error(ErrorCode::NotFound, cut);
    init_bell(*b);  // ours to write; whatever was in it is untrusted anyway
  }
  ring.publisher_id = h->publisher_id;
  ring.capacity = cap;
  ring.policy = Policy(h->policy) == Policy::Latest ? Policy::Latest : Policy::Block;
}

TopicInfo topic_info_of(const TopicSlot& slot) {
  TopicInfo info;
  info.name = read_name(slot.name, kNameBytes);
  info.type = read_name(slot.type, kNameBytes);
  info.schema_id = read_name(slot.schema_id, sizeof slot.schema_id);
  info.policy = Policy(slot.policy);
  info.ring_size = slot.ring_size;
  info.slow_consumer_timeout = slot.slow_timeout_ns == UINT64_MAX ? kNever : std::chrono::nanoseconds(slot.slow_timeout_ns);
  info.retention = std::chrono::seconds(slot.retention_s);
  info.mode = slot.mode;
  info.group = slot.group;
  info.owner_uid = slot.owner_uid_plus1 == 0 ? -1 : int64_t(slot.owner_uid_plus1) - 1;
  info.owner_gid = slot.owner_gid_plus1 == 0 ? -1 : int64_t(slot.owner_gid_plus1) - 1;
  info.untrusted = (slot.flags & kTopicUntrusted) != 0;
  const size_t n = std::min<uint64_t>(slot.schema_size, kMaxSchemaBytes);
  info.schema.assign(slot.schema, slot.schema + n);
  return info;
}

void BusState::check_not_inherited(const char* what) const {
  if (inherited()) throw Error(ErrorCode::WrongProcess, inherited_handle_message(what, pid));
}

void BusState::check_writable(const std::string& what) const {
  if (!read_only) return;
  throw Error(ErrorCode::PermissionDenied,
              "bus '" + name + "': this process may only read it (its directory /dev/shm/" + segment.name() + " is " +
                  describe_owner_and_mode(segment.name()) + "), so it may not " + what +
                  "; run as the bus's owner, or ask them to create it with a --mode and --group that let you write it");
}

BusState::~BusState() {
  // A fork() child's copy: the participant slot is its parent's.
  if (dir == nullptr || participant >= kParticipants || not_ours()) return;
  // Leave: our participant slot goes back to Free. Release: everything we
  // did to the directory happens before someone else claims the slot.
  uint64_t expected = participant_word;
  dir->participants[participant].state.compare_exchange_strong(
      expected, SlotWord::pack(SlotWord::epoch(participant_word), 0, kFree), std::memory_order_release);
  bump_generation();
}

bool BusState::participant_alive(uint32_t index) const noexcept {
  if (index >= kParticipants) return false;
  const ParticipantSlot& p = dir->participants[index];
  const uint64_t w = p.state.load(std::memory_order_acquire);
  if (SlotWord::state(w) != kReady) return false;
  if (w == participant_word && index == participant) return true;
  return process_alive(pid_t(SlotWord::who(w)), p.start_time);
}

void BusState::bump_generation() noexcept {
  // Release: pairs with subscribers' acquire load of generation; the slot
  // changes made before are visible to whoever sees the new generation.
  dir->header.generation.fetch_add(1, std::memory_order_release);
  dir->header.topology_word.fetch_add(1, std::memory_order_release);
  futex_wake_all(&dir->header.topology_word);
}

std::optional<TopicInfo> BusState::find_topic(const std::string& name) const {
  for (uint32_t i = 0; i < kTopics; ++i) {
    const TopicSlot& t = dir->topics[i];
    // Acquire: pairs with the creator's store of Ready; the fields are complete.
    if (SlotWord::state(t.state.load(std::memory_order_acquire)) != kReady) continue;
    if (name == read_name(t.name, kNameBytes)) return topic_info_of(t);  // lowest index wins
  }
  return std::nullopt;
}

std::vector<TopicInfo> BusState::topics() const {
  std::vector<TopicInfo> out;
  for (uint32_t i = 0; i < kTopics; ++i) {
    const TopicSlot& t = dir->topics[i];
    if (SlotWord::state(t.state.load(std::memory_order_acquire)) != kReady) continue;
    TopicInfo info = topic_info_of(t);
    bool shadow = false;  // a duplicate left by a creation race: the lower index wins
    for (const auto& seen : out) shadow |= seen.name == info.name;
    if (!shadow) out.push_back(std::move(info));
  }
  return out;
}

namespace {

/// Rolls back a Claiming slot whose claimer died. Returns true if it did.
bool roll_back_if_dead_claimer(std::atomic<uint64_t>& state) {
  uint64_t w = state.load(std::memory_order_acquire);
  if (SlotWord::state(w) != kClaiming || process_alive(pid_t(SlotWord::who(w)), 0)) return false;
  // acq_rel: we publish the rollback; if the claimer's successor changed it
  // meanwhile the CAS fails and we leave it alone.
  return state.compare_exchange_strong(w, SlotWord::pack(SlotWord::epoch(w), 0, kFree), std::memory_order_acq_rel);
}

}  // namespace

size_t BusState::clean_up_dead_participants() {
  size_t cleaned = 0;
  bool changed = false;
  for (uint32_t i = 0; i < kParticipants; ++i) {
    ParticipantSlot& p = dir->participants[i];
    uint64_t w = p.state.load(std::memory_order_acquire);
    const uint32_t state = SlotWord::state(w);
    if (state == kClaiming) {
      changed |= roll_back_if_dead_claimer(p.state);
      continue;
    }
    if (state == kReady && participant_alive(i)) continue;
    if (state == kCleaning && process_alive(pid_t(SlotWord::who(w)), 0)) continue;  // someone is on it
    if (state != kReady && state != kCleaning) continue;
    // Take the cleanup over; the epoch stays so ring owners still match it.
    const uint32_t epoch = SlotWord::epoch(w);
    if (!p.state.compare_exchange_strong(w, SlotWord::pack(epoch, uint32_t(pid), kCleaning), std::memory_order_acq_rel))
      continue;
    for (uint32_t r = 0; r < kRings; ++r) {
      RingSlot& ring = dir->rings[r];
      if (SlotWord::state(ring.state.load(std::memory_order_acquire)) != kReady) continue;
      uint64_t owner = ring.owner.load(std::memory_order_acquire);
      if (owner != 0 && SlotWord::who(owner) == i && SlotWord::epoch(owner) == epoch)
        ring.owner.compare_exchange_strong(owner, 0, std::memory_order_acq_rel);  // the ring stays: it is retention
    }
    // Release: the cleanup above happens before the slot can be claimed again.
    p.state.store(SlotWord::pack(epoch, 0, kFree), std::memory_order_release);
    ++cleaned;
    changed = true;
  }
  for (TopicSlot& t : dir->topics) changed |= roll_back_if_dead_claimer(t.state);
  for (RingSlot& r : dir->rings) {
    // A creator that died before its ring was Ready may have made its
    // segments already. Remove them before freeing the slot: while the slot
    // is Claiming (dead pid) with this name, no one else creates the name
    // (a rival steps back on seeing it), so what we remove is the dead
    // creator's. Names are complete: it wrote them before its seq_cst
    // store, and it is dead.
    const uint64_t w = r.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kClaiming || process_alive(pid_t(SlotWord::who(w)), 0)) continue;
    if (strnlen(r.topic, kNameBytes) < kNameBytes && strnlen(r.publisher, kPublisherNameBytes) < kPublisherNameBytes &&
        r.topic[0] != 0 && r.publisher[0] != 0) {
      const std::string topic = read_name(r.topic, kNameBytes), publisher = read_name(r.publisher, kPublisherNameBytes);
      for (const std::string& seg : ring_segment_names(name, topic, publisher)) Segment::remove(seg);
    }
    changed |= roll_back_if_dead_claimer(r.state);
  }
  if (changed) bump_generation();
  return cleaned;
}

size_t BusState::remove_expired_rings(std::vector<std::string>* removed_segments) {
  size_t kept = 0;
  bool changed = false;
  const uint64_t now = unix_now_ns();
  for (RingSlot& r : dir->rings) {
    // Acquire (state, owner): as every directory reader (directory_layout.hpp),
    // so the names read below are the ones published with Ready.
    uint64_t w = r.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kReady) continue;
    uint64_t owner = r.owner.load(std::memory_order_acquire);
    const std::string topic = read_name(r.topic, kNameBytes), publisher = read_name(r.publisher, kPublisherNameBytes);
    if (is_removing_owner(owner)) {
      // Being removed: by a live remover (leave it), or one that died half-way
      // (take its tombstone over, acq_rel as any takeover, and finish).
      if (process_alive(pid_t(SlotWord::who(owner)), 0)) continue;
      if (!r.owner.compare_exchange_strong(owner, removing_owner(uint32_t(pid)), std::memory_order_acq_rel)) continue;
    } else {
      if (owner != 0) {
        ++kept;
        continue;
      }
      const auto info = find_topic(topic);
      uint64_t last = r.created_ns;
      try {
        RingSegments ring;
        open_ring_segments(ring, name, topic, publisher, Access::ReadOnly, Access::ReadOnly, Access::ReadOnly);
        last = std::max(last, ring.header()->last_publish_ns.load(std::memory_order_relaxed));
      } catch (const Error& e) {
        if (e.code() == ErrorCode::PermissionDenied) {  // not ours to judge, nor to remove
          ++kept;
          continue;
        }
        // Being made, or its bell cut short by a reader: retention still
        // counts from its data (a reader must not get retained events
        // removed). Damaged or missing: nothing worth retaining.
        last = e.code() == ErrorCode::NotFound ? last_publish_in_data(name, topic, publisher, r.created_ns) : 0;
      }
      const uint64_t retention_ns = info ? uint64_t(info->retention.count()) * 1000000000ull : 0;
      if (last + retention_ns > now) {
        ++kept;
        continue;
      }
      // The tombstone first: a publisher restarting right now cannot attach
      // to segments we are about to remove, nor create the name anew.
      uint64_t no_owner = 0;
      if (!r.owner.compare_exchange_strong(no_owner, removing_owner(uint32_t(pid)), std::memory_order_acq_rel)) {
        ++kept;
        continue;
      }
    }
    // Segments, then the slot: killed anywhere in between, we leave a
    // tombstone with a dead pid, which the next opener finishes (above).
    for (const std::string& seg : ring_segment_names(name, topic, publisher))
      if (Segment::remove(seg) && removed_segments != nullptr) removed_segments->push_back(seg);
    // Free the slot through Claiming(us): clearing the owner after the slot
    // is Free could overwrite the owner a new claimer just stored; while we
    // hold it Claiming nobody can claim it. acq_rel: as every claim. Under a
    // tombstone no one else changes a Ready ring's state, so it succeeds.
    // (Killed between the two stores: a Claiming slot of a dead pid, rolled
    // back by the next opener; the stale owner word is overwritten by
    // whoever claims the slot next.)
    if (r.state.compare_exchange_strong(w, SlotWord::pack(SlotWord::epoch(w), uint32_t(pid), kClaiming),
                                        std::memory_order_acq_rel)) {
      r.owner.store(0, std::memory_order_relaxed);  // published by the release store below
      r.state.store(SlotWord::pack(SlotWord::epoch(w), 0, kFree), std::memory_order_release);
    }
    changed = true;
  }
  if (changed) bump_generation();
  return kept;
}

namespace {


void remove_leftovers_of_dead_creators(const std::string& seg_name) {
  const std::string prefix = seg_name + kDirectoryDraftSuffix;
  for (const std::string& seg : list_shm_segments()) {
    if (seg.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(seg.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && !process_alive(pid_t(pid), 0)) Segment::remove(seg);
  }
}

void initialise_directory(DirectoryLayout* dir, uint64_t size) {
  dir->header.layout_version = kLayoutVersion;
  dir->header.participants = kParticipants;
  dir->header.topics = kTopics;
  dir->header.rings = kRings;
  dir->header.segment_size = size;
  dir->header.created_ns = unix_now_ns();
  // Release: openers acquire magic and then see a complete header.
  dir->header.magic.store(kDirectoryMagic, std::memory_order_release);
}

void check_directory(const DirectoryLayout* dir, const std::string& bus, uint64_t size) {
  // A creator may still be writing the header: give it a moment.
  for (int i = 0; i < 1000 && dir->header.magic.load(std::memory_order_acquire) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const uint64_t magic = dir->header.magic.load(std::memory_order_acquire);
  if (magic != kDirectoryMagic)
    throw Error(ErrorCode::Corrupt, "bus '" + bus + "': its directory segment /dev/shm/" + directory_segment_name(bus) +
                                        " has no valid magic; it is damaged or not a flowbus bus: remove it with `flowbus gc --force " + bus + "`");
  if (dir->header.layout_version != kLayoutVersion)
    throw Error(ErrorCode::VersionMismatch,
                "bus '" + bus + "' was created with layout version " + std::to_string(dir->header.layout_version) +
                    ", this flowbus speaks version " + std::to_string(kLayoutVersion) +
                    ": stop its processes and remove it with `flowbus gc --force " + bus + "`, or use a matching flowbus");
  if (dir->header.segment_size != size || dir->header.participants != kParticipants ||
      dir->header.topics != kTopics || dir->header.rings != kRings)
    throw Error(ErrorCode::Corrupt, "bus '" + bus + "': directory sizes do not match its segment; it is damaged");
}

std::shared_ptr<BusState> attach(std::string_view name_view, const BusOptions* create) {
  const std::string name(name_view);
  validate_bus_name(name);
  auto state = std::make_shared<BusState>();
  state->name = name;
  state->host = host_name();
  state->pid = ::getpid();
  state->start_time = process_start_time(state->pid);
  const std::string seg_name = directory_segment_name(name);
  const uint64_t size = sizeof(DirectoryLayout);
  bool created = false;
  // A creator killed half-way (before or just after linking its directory
  // into place) leaves its draft: the next open removes it.
  remove_leftovers_of_dead_creators(seg_name);
  if (create != nullptr && !Segment::exists(seg_name)) {
    // Made whole under a name of our own, then linked into place in one step:
    // nobody ever opens a directory that is half made.
    const std::string draft = seg_name + kDirectoryDraftSuffix + std::to_string(state->pid);
    Segment::remove(draft);  // ours from an earlier life of this pid: not in use
    Segment segment = Segment::create(draft, size, create->mode, create->group);
    initialise_directory(reinterpret_cast<DirectoryLayout*>(segment.data()), size);
    if (segment.publish_as(seg_name)) {  // else another creator was first: open theirs
      state->segment = std::move(segment);
      created = true;
    }
  }
  if (!created) {
    try {
      try {
        state->segment = Segment::open(seg_name, Access::ReadWrite, sizeof(DirectoryHeader));
      } catch (const Error& e) {
        // A reader needs no write access to the directory: a member of a
        // 0640 bus's group opens it read-only (least privilege).
        if (e.code() != ErrorCode::PermissionDenied) throw;
        state->segment = Segment::open(seg_name, Access::ReadOnly, sizeof(DirectoryHeader));
        state->read_only = true;
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::NotFound)
        throw Error(ErrorCode::NotFound, "bus '" + name + "' does not exist on this host; create it with `flowbus topic create " + name + " ...` or list buses with `flowbus inspect`");
      if (e.code() == ErrorCode::Corrupt) throw_damaged_directory(name, e);
      throw;
    }
    if (state->segment.size() < size) {
      auto* header = reinterpret_cast<const DirectoryHeader*>(state->segment.data());
      if (header->magic.load(std::memory_order_acquire) == kDirectoryMagic && header->layout_version != kLayoutVersion)
        throw Error(ErrorCode::VersionMismatch, "bus '" + name + "' was created with layout version " +
                                                    std::to_string(header->layout_version) + ", this flowbus speaks version " +
                                                    std::to_string(kLayoutVersion) + ": remove it with `flowbus gc --force " + name + "`");
      throw Error(ErrorCode::Corrupt, "bus '" + name + "': directory segment is too small; it is damaged: remove it with `flowbus gc --force " + name + "`");
    }
  }
  state->dir = reinterpret_cast<DirectoryLayout*>(state->segment.data());
  check_directory(state->dir, name, size);
  if (state->read_only) {
    // Only what is ours to clean: the reader segments of our uid's dead.
    remove_dead_reader_segments(name);
    state->participant = UINT32_MAX;
    return state;
  }
  state->clean_up_dead_participants();
  remove_dead_reader_segments(name);
  // Rings whose writer is gone and whose retention ended go too, so that no
  // one ever needs `rm /dev/shm/...` (flowbus gc does the same, bus by bus).
  state->remove_expired_rings();
  // Claim a participant slot: Free -> Claiming(pid) -> fill -> Ready(pid).
  for (uint32_t i = 0; i < kParticipants; ++i) {
    ParticipantSlot& p = state->dir->participants[i];
    uint64_t w = p.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kFree) continue;
    const uint32_t epoch = SlotWord::epoch(w) + 1;
    if (!p.state.compare_exchange_strong(w, SlotWord::pack(epoch, uint32_t(state->pid), kClaiming),
                                         std::memory_order_acq_rel))
      continue;
    p.start_time = state->start_time;
    p.attached_ns = unix_now_ns();
    state->participant = i;
    state->participant_word = SlotWord::pack(epoch, uint32_t(state->pid), kReady);
    // Release: the fields above are visible to whoever sees Ready.
    p.state.store(state->participant_word, std::memory_order_release);
    state->bump_generation();
    return state;
  }
  state->dir = nullptr;
  throw Error(ErrorCode::NoSpace, "bus '" + name + "' has " + std::to_string(kParticipants) +
                                      " live participants already; close some processes or run `flowbus gc`");
}

/// The arguments of `spec`, each against its allowed values.
void validate_spec(const TopicSpec& spec) {
  validate_topic_name(spec.name);
  if (spec.type.empty() || spec.type.size() >= kNameBytes)
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': give the event type, the schema's root table (e.g. examples.Order)");
  if (spec.schema.empty())
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': give its binary schema (compile the .fbs with flowbus::compile_schema_file)");
  if (spec.schema.size() > kMaxSchemaBytes)
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': schema of " + std::to_string(spec.schema.size()) +
                                                " bytes exceeds the " + std::to_string(kMaxSchemaBytes) + " bytes a topic can hold");
  if (!schema_has_table(spec.schema, spec.type))
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': the schema has no table '" + spec.type +
                                                "'; name the root table with its namespace, e.g. examples.Order");
  if (spec.ring_size < 4096 || spec.ring_size > (1ull << 40) || (spec.ring_size & (spec.ring_size - 1)) != 0)
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': ring size " + size_text(spec.ring_size) +
                                                " must be a power of two from 4KiB to 1TiB (e.g. 4MiB)");
  if (spec.mode > 0777 || (spec.mode & 0600) != 0600)
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': mode must be within 0777 and give its owner rw (e.g. 0600, 0640)");
  if (spec.slow_consumer_timeout.count() <= 0)
    throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "': the slow-consumer timeout must be positive (or kNever)");
  if (spec.untrusted) {
    // Its readers verify every event with this codec: a type FlatBuffers
    // cannot verify safely must be refused now, not at the first reader.
    try {
      SchemaCodec codec(spec.schema, spec.type);
    } catch (const Error& e) {
      throw Error(ErrorCode::InvalidArgument, "topic '" + spec.name + "' cannot be untrusted: " + e.what());
    }
  }
}

void check_same_topic(const TopicInfo& existing, const TopicSpec& spec) {
  const std::vector<std::string> differences = topic_differences(existing, spec);
  if (!differences.empty()) {
    std::string list;
    for (const std::string& d : differences) list += (list.empty() ? "" : "; ") + d;
    throw Error(ErrorCode::AlreadyExists, "topic '" + spec.name + "' exists with other settings (" + list +
                                              "): ask for the settings it has, or use another topic name");
  }
  check_compatible_evolution(existing.schema, spec.schema);
}

/// A new topic whose ring cannot fit in /dev/shm would only fail at its
/// first publisher: refuse it now, naming the free space.
void check_room_for_a_ring(const TopicSpec& spec) {
  struct statvfs fs{};
  if (::statvfs("/dev/shm", &fs) != 0) return;  // no answer: the ring's creation will tell
  const uint64_t free_bytes = uint64_t(fs.f_bavail) * fs.f_frsize;
  if (spec.ring_size + kRecordsOffset > free_bytes)
    throw Error(ErrorCode::NoSpace, "topic '" + spec.name + "': a ring of " + size_text(spec.ring_size) +
                                        " does not fit in /dev/shm, which has " + approximate_size_text(free_bytes) +
                                        " free (each publisher gets a ring of that size); choose a smaller ring size "
                                        "or free space in /dev/shm (`flowbus gc`)");
}

/// Claims a free topic slot, fills it, and publishes it unless a rival is
/// creating the same name: then it rolls back and returns nothing. Returns
/// the topic (ours, or the rival's if it is already Ready).
std::optional<TopicInfo> try_create_topic(BusState& bus, const TopicSpec& spec) {
  DirectoryLayout* dir = bus.dir;
  for (uint32_t i = 0; i < kTopics; ++i) {
    TopicSlot& t = dir->topics[i];
    uint64_t w = t.state.load(std::memory_order_acquire);
    if (SlotWord::state(w) != kFree) continue;
    const uint32_t epoch = SlotWord::epoch(w) + 1;
    if (!t.state.compare_exchange_strong(w, SlotWord::pack(epoch, uint32_t(bus.pid), kClaiming), std::memory_order_acq_rel))
      continue;
    t.policy = uint32_t(spec.policy);
    t.mode = spec.mode;
    t.group = spec.group;
    t.owner_uid_plus1 = uint32_t(::geteuid()) + 1;
    t.owner_gid_plus1 = uint32_t(spec.group >= 0 ? gid_t(spec.group) : ::getegid()) + 1;
    t.flags = spec.untrusted ? kTopicUntrusted : 0;  // set every time: a freed slot keeps its old bytes
    t.reserved = 0;
    t.ring_size = spec.ring_size;
    t.slow_timeout_ns = spec.slow_consumer_timeout == kNever ? UINT64_MAX : uint64_t(spec.slow_consumer_timeout.count());
    t.retention_s = uint64_t(spec.retention.count());
    t.schema_size = spec.schema.size();
    t.created_ns = unix_now_ns();
    copy_name(t.name, kNameBytes, spec.name);
    copy_name(t.type, kNameBytes, spec.type);
    copy_name(t.schema_id, sizeof t.schema_id, schema_id(spec.schema));
    std::memcpy(t.schema, spec.schema.data(), spec.schema.size());
    // seq_cst store of our (named) claim, then seq_cst loads of every other
    // slot: of two processes creating one name at once, at least one sees the
    // other (Dekker). Whoever sees a rival steps back, so at most one goes on.
    t.state.store(SlotWord::pack(epoch, uint32_t(bus.pid), kClaiming), std::memory_order_seq_cst);
    for (uint32_t j = 0; j < kTopics; ++j) {
      if (j == i) continue;
      const TopicSlot& other = dir->topics[j];
      const uint32_t state = SlotWord::state(other.state.load(std::memory_order_seq_cst));
      if ((state == kClaiming || state == kReady) && read_name(other.name, kNameBytes) == spec.name) {
        t.state.store(SlotWord::pack(epoch, 0, kFree), std::memory_order_release);
        if (state == kReady) return topic_info_of(other);
        return std::nullopt;
      }
    }
    // Release: the fields above are complete for whoever sees Ready.
    t.state.store(SlotWord::pack(epoch, 0, kReady), std::memory_order_release);
    bus.bump_generation();
    return topic_info_of(t);
  }
  throw Error(ErrorCode::NoSpace, "bus '" + bus.name + "' holds " + std::to_string(kTopics) + " topics already");
}

}  // namespace
}  // namespace detail

using namespace detail;

void validate_topic_spec(const TopicSpec& spec) {
  validate_spec(spec);
  check_room_for_a_ring(spec);
}

std::vector<std::string> topic_differences(const TopicInfo& existing, const TopicSpec& spec) {
  std::vector<std::string> out;
  const auto differ = [&](const char* setting, const std::string& has, const std::string& asked) {
    if (has != asked) out.push_back(std::string(setting) + " " + has + ", asked " + asked);
  };
  const auto group_text = [](int64_t group) { return group < 0 ? std::string("none (the creator's)") : std::to_string(group); };
  differ("type", existing.type, spec.type);
  differ("policy", to_string(existing.policy), to_string(spec.policy));
  differ("ring size", size_text(existing.ring_size), size_text(spec.ring_size));
  differ("slow-consumer timeout", duration_text(existing.slow_consumer_timeout), duration_text(spec.slow_consumer_timeout));
  differ("retention", duration_text(existing.retention), duration_text(spec.retention));
  differ("mode", mode_text(existing.mode), mode_text(spec.mode));
  differ("group", group_text(existing.group), group_text(spec.group));
  differ("untrusted", existing.untrusted ? "yes" : "no", spec.untrusted ? "yes" : "no");
  return out;
}

Bus::Bus(std::shared_ptr<BusState> state) : state_(std::move(state)) {}
Bus::Bus(Bus&&) noexcept = default;
Bus& Bus::operator=(Bus&&) noexcept = default;
Bus::~Bus() = default;

Bus Bus::open(std::string_view name, const BusOptions& options) { return Bus(attach(name, &options)); }
Bus Bus::open_existing(std::string_view name) { return Bus(attach(name, nullptr)); }
const std::string& Bus::name() const noexcept { return state_->name; }

std::optional<TopicInfo> Bus::find_topic(std::string_view name) const { return state_->find_topic(std::string(name)); }
std::vector<TopicInfo> Bus::topics() const { return state_->topics(); }

TopicInfo Bus::create_topic(const TopicSpec& spec) {
  state_->check_not_inherited("Bus handle");
  validate_spec(spec);
  if (state_->read_only) {  // a topic that exists as asked needs no write
    if (auto existing = state_->find_topic(spec.name)) {
      check_same_topic(*existing, spec);
      return *existing;
    }
  }
  state_->check_writable("create topic '" + spec.name + "'");
  std::minstd_rand backoff(uint32_t(state_->pid));
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (auto existing = state_->find_topic(spec.name)) {
      check_same_topic(*existing, spec);
      return *existing;
    }
    if (attempt == 0) check_room_for_a_ring(spec);
    if (auto created = try_create_topic(*state_, spec)) {
      check_same_topic(*created, spec);  // ours, or a rival's that won the race
      return *created;
    }
    // A rival is creating the same name right now: let it finish.
    std::this_thread::sleep_for(std::chrono::microseconds(100 + backoff() % 2000));
  }
  throw Error(ErrorCode::AlreadyExists, "topic '" + spec.name + "' is being created by another process that does not finish; run `flowbus gc " + state_->name + "` and try again");
}

size_t Bus::destroy(std::string_view name_view) {
  const std::string name(name_view);
  validate_bus_name(name);
  // Every segment of bus B is named "flowbus.B" or "flowbus.B.<...>", and bus
  // names hold no '.', so this prefix matches bus B and nothing else; drafts
  // of its directory are "flowbus.B@new.<pid>", its readers' segments
  // "flowbus.B~<...>".
  const std::string directory = directory_segment_name(name), prefix = directory + ".", drafts = directory + kDirectoryDraftSuffix;
  const std::string readers = reader_segment_prefix(name);
  size_t removed = 0;
  for (const std::string& seg : list_shm_segments())
    if (seg == directory || seg.rfind(prefix, 0) == 0 || seg.rfind(drafts, 0) == 0 || seg.rfind(readers, 0) == 0)
      removed += Segment::remove(seg);
  return removed;
}

}  // namespace flowbus
