// Fuzz target: arbitrary bytes as a bus directory segment in /dev/shm, under
// a bus name unique to this process, then inspect_bus and Bus::open_existing
// (which cleans up "dead" participants and claims a slot) and inspect_bus
// again. Each must work or throw flowbus::Error; the segment is removed after
// every input.
//
// The directory is 4.3 MiB, almost all of it schema bytes that opening never
// parses, so the input is scattered over windows of a zeroed, full-size
// segment rather than written from offset 0: the header, participant slots
// 0-7, the first 512 bytes (everything but the schema) of topic slots 0-3,
// and ring slots 0-7, in that order (windows.hpp; 5376 bytes in all).
//
// An input whose magic is 0 is skipped: Bus::open_existing waits a second for
// a creator to finish such a directory, which would stall the fuzzer.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "directory_layout.hpp"
#include "directory_windows.hpp"
#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"

using namespace flowbus;
using namespace flowbus::detail;

namespace {

const std::string& bus_name() {
  static const std::string name = "fuzzdir-" + std::to_string(::getpid());
  return name;
}

bool write_segment(const std::string& segment, const uint8_t* data, size_t size) {
  const int fd = ::shm_open(("/" + segment).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("directory_fuzz: shm_open");
    std::abort();  // a leftover of an earlier run with our pid, or /dev/shm unusable
  }
  bool ok = ::ftruncate(fd, sizeof(DirectoryLayout)) == 0;
  for_each_window([&](size_t offset, size_t length, size_t input_offset) {
    if (!ok || input_offset >= size) return;
    const size_t n = std::min(length, size - input_offset);
    ok = ::pwrite(fd, data + input_offset, n, off_t(offset)) == ssize_t(n);
  });
  ::close(fd);
  return ok;
}

void inspect(const std::string& name) {
  try {
    const BusSnapshot snap = inspect_bus(name);
    (void)snap;
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t magic = 0;
  std::memcpy(&magic, data, std::min(size, sizeof magic));
  if (magic == 0) return -1;
  const std::string segment = "flowbus." + bus_name();
  if (!write_segment(segment, data, size)) {
    ::shm_unlink(("/" + segment).c_str());
    std::fprintf(stderr, "directory_fuzz: cannot write /dev/shm/%s\n", segment.c_str());
    std::abort();
  }
  inspect(bus_name());
  try {
    Bus bus = Bus::open_existing(bus_name());
    inspect(bus_name());
    (void)bus.topics();
  } catch (const Error&) {
  }
  ::shm_unlink(("/" + segment).c_str());
  return 0;
}
