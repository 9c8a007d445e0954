// flowbus gc. Atomics on directory words follow the rules in directory_layout.hpp.
#include "flowbus/gc.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "bus_state.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/names.hpp"
#include "liveness.hpp"
#include "reader_segment.hpp"

namespace flowbus {
using namespace detail;

std::vector<std::string> list_buses() {
  std::set<std::string> names;
  for (const std::string& seg : list_shm_segments()) {
    const std::string rest = seg.substr(8);  // after "flowbus."
    names.insert(rest.substr(0, rest.find_first_of(".@~")));  // a ring's, a draft's, a reader's
  }
  return {names.begin(), names.end()};
}

namespace {

void collect_bus(const std::string& name, bool force, GcReport& report) {
  auto state = std::make_shared<BusState>();
  state->name = name;
  state->pid = ::getpid();
  state->start_time = process_start_time(state->pid);
  state->participant = UINT32_MAX;  // gc looks, cleans, removes; it never joins
  auto destroy_all = [&](const std::string& why) {
    state->dir = nullptr;
    state->segment = Segment();
    const std::string dir_name = directory_segment_name(name), prefix = dir_name + ".";
    size_t removed = 0;
    for (const std::string& seg : list_shm_segments())
      if ((seg == dir_name || seg.rfind(prefix, 0) == 0 || seg.rfind(dir_name + kDirectoryDraftSuffix, 0) == 0 ||
           seg.rfind(reader_segment_prefix(name), 0) == 0) &&
          Segment::remove(seg)) {
        report.removed_segments.push_back(seg);
        ++removed;
      }
    if (removed != 0) report.removed_buses.push_back(name + ": " + why);
    else report.errors.push_back("bus '" + name + "' does not exist on this host; `flowbus inspect` lists the buses there are");
  };
  try {
    state->segment = Segment::open(directory_segment_name(name), Access::ReadWrite, sizeof(DirectoryLayout));
  } catch (const Error& e) {
    if (e.code() == ErrorCode::NotFound) return destroy_all("ring segments without a directory");
    if (force && e.code() != ErrorCode::PermissionDenied) return destroy_all(std::string("damaged (") + e.what() + ")");
    // Too small for this layout: damaged, or of another version (a directory is never seen half made).
    report.errors.push_back(e.code() == ErrorCode::Corrupt ? "bus '" + name + "': " + e.what() +
                                                                 "; it is damaged or of another layout version: `flowbus gc --force " +
                                                                 name + "` removes it"
                                                           : std::string(e.what()));
    return;
  }
  state->dir = reinterpret_cast<DirectoryLayout*>(state->segment.data());
  const DirectoryHeader& h = state->dir->header;
  if (h.magic.load(std::memory_order_acquire) != kDirectoryMagic || h.layout_version != kLayoutVersion) {
    if (force) return destroy_all("damaged or another layout version");
    report.errors.push_back("bus '" + name + "' has another layout version or is damaged; `flowbus gc --force " + name + "` removes it");
    state->dir = nullptr;
    return;
  }
  report.participants_cleaned += state->clean_up_dead_participants();
  remove_dead_reader_segments(name, &report.removed_segments);
  size_t live = 0;  // processes: participants, and readers without a participant slot
  std::vector<uint32_t> live_pids;
  for (uint32_t i = 0; i < kParticipants; ++i)
    if (state->participant_alive(i))
      live_pids.push_back(SlotWord::who(state->dir->participants[i].state.load(std::memory_order_acquire)));
  // Readers of a read-only directory hold no participant slot: their reader segments say they are there.
  for (const uint32_t pid : live_reader_pids(name))
    if (std::find(live_pids.begin(), live_pids.end(), pid) == live_pids.end()) live_pids.push_back(pid);
  live = live_pids.size();
  const size_t retained = state->remove_expired_rings(&report.removed_segments);
  // A topic is configuration an operator made on purpose (often before its
  // publisher starts): it is not garbage, only --force removes it.
  size_t topics = 0;
  for (const TopicSlot& t : state->dir->topics) topics += SlotWord::state(t.state.load(std::memory_order_acquire)) == kReady;
  state->bump_generation();
  if (live == 0 && ((retained == 0 && topics == 0) || force))
    return destroy_all(force && (retained || topics) ? "no live participant (forced)" : "no live participant, nothing retained");
  report.kept_buses.push_back(name + ": " + std::to_string(live) + " live participant(s), " + std::to_string(retained) +
                              " retained ring(s), " + std::to_string(topics) + " topic(s)" +
                              (live == 0 ? "; `flowbus gc --force " + name + "` removes it with its topics" : ""));
  state->dir = nullptr;  // not a participant: nothing to leave
}

}  // namespace

GcReport collect_garbage(const std::optional<std::string>& bus, bool force) {
  GcReport report;
  if (bus) {
    validate_bus_name(*bus);
    collect_bus(*bus, force, report);
    return report;
  }
  for (const std::string& name : list_buses()) {
    try {
      validate_bus_name(name);
    } catch (const Error&) {
      continue;  // not ours
    }
    collect_bus(name, force, report);
  }
  return report;
}

}  // namespace flowbus
