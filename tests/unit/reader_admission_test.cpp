// The writer's admission of a reader (least privilege, step 6): an untrusted
// announcement (token, pid, n, line) becomes a read-only, fault-guarded
// mapping of that reader's line only if the kernel's facts (owner, group and
// mode of the segment, the euid of its process) and the segment's header and
// line agree with it. Real segments, real processes; the tests across uids
// fork and drop to unused uids (they need root, and are skipped otherwise).
#include "reader_admission.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "liveness.hpp"
#include "reader_segment.hpp"
#include "segment.hpp"
#include "test_bus.hpp"

namespace flowbus::testing {
namespace {

using detail::AdmissionRequest;
using detail::AdmittedReader;
using detail::CursorLine;
using detail::ReaderAdmissions;
using detail::ReaderHeader;
using detail::ReaderRule;
using detail::ReaderSegment;

constexpr uint64_t kPublisher = 0xfeed0001;
constexpr uint32_t kRingSlot = 7;
// Ids no account uses here (as in AccessTest).
constexpr uid_t kStrangerUid = 54321;
constexpr gid_t kStrangerGid = 54321;
constexpr gid_t kTopicGroup = 54322;

std::string segment_name(const std::string& bus, uint32_t pid, uint32_t n) {
  std::string name = detail::reader_segment_prefix(bus);
  name.append("r.").append(std::to_string(pid)).append(".").append(std::to_string(n));
  return name;
}

std::string shm(const std::string& name) {
  std::string path = "/dev/shm/";
  path.append(name);
  return path;
}

/// The announcement of `line` of `segment`, as an honest reader makes it.
AdmissionRequest announce(const ReaderSegment& segment, const CursorLine* line) {
  AdmissionRequest r;
  r.token = segment.header()->token;
  r.pid = uint32_t(segment.header()->pid);
  r.n = uint32_t(std::strtoul(segment.name().c_str() + segment.name().rfind('.') + 1, nullptr, 10));
  r.line = uint32_t(line - segment.header()->line);
  return r;
}

/// A reader of this process: its segment, and a line on our ring at `position`.
struct OwnReader {
  std::unique_ptr<ReaderSegment> segment;
  CursorLine* line = nullptr;
  AdmissionRequest request;

  explicit OwnReader(const std::string& bus, uint64_t position = 100, int64_t group = -1)
      : segment(ReaderSegment::create(bus, group)) {
    claim(position);
  }
  /// Claims another line, and announces that one from now on.
  CursorLine* claim(uint64_t position, uint64_t publisher = kPublisher, uint32_t slot = kRingSlot) {
    line = segment->claim_line(publisher, slot);
    line->position.store(position, std::memory_order_release);  // as RingReader::store_cursor
    request = announce(*segment, line);
    return line;
  }
};

std::string refusal(ReaderAdmissions& admissions, const AdmissionRequest& request) {
  std::string why;
  const std::optional<AdmittedReader> r = admissions.admit(request, &why);
  if (r) {
    admissions.release(*r);
    return "admitted";
  }
  return why;
}

/// Makes a reader segment by hand, under our pid and `n`: `model`'s header
/// (and lines), changed by `edit`. Returns its name.
std::string forge(const std::string& bus, uint32_t n, const ReaderHeader& model,
                  const std::function<void(ReaderHeader&)>& edit, uint64_t size = sizeof(ReaderHeader),
                  uint32_t mode = 0640) {
  const std::string name = segment_name(bus, uint32_t(::getpid()), n);
  detail::Segment seg = detail::Segment::create(name, size, mode, -1);
  if (size >= sizeof(ReaderHeader)) {
    std::memcpy(seg.data(), &model, sizeof(ReaderHeader));
    edit(*reinterpret_cast<ReaderHeader*>(seg.data()));
  }
  return name;
}

/// A child process running as kStrangerUid (group kStrangerGid, supplementary
/// groups `groups`): runs `body`, hands what it returns to output(), then
/// stays alive until this object is destroyed. (AccessTest's as_stranger,
/// with a process that lives on.)
class Stranger {
 public:
  /// `as_root`, if given, runs first, before the child drops its
  /// privileges: if it returns anything, that is the output, and `body` is
  /// not run.
  template <class F>
  Stranger(const std::vector<gid_t>& groups, F body, const std::function<std::string()>& as_root = nullptr) {
    int out[2], hold[2];
    if (::pipe(out) != 0 || ::pipe(hold) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(out[0]);
      ::close(hold[1]);
      std::string result = as_root ? as_root() : std::string();
      if (!result.empty()) {
        // as_root said why not
      } else if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(kStrangerGid) != 0 ||
                 ::setuid(kStrangerUid) != 0) {
        result = "could not drop privileges";
      } else if (::getuid() != kStrangerUid || ::setuid(0) == 0) {
        result = "privileges not dropped";
      } else {
        try {
          result = body();
        } catch (const std::exception& e) {
          result = "unexpected: ";
          result.append(e.what());
        }
      }
      (void)!::write(out[1], result.data(), result.size());
      ::close(out[1]);
      char c;
      while (::read(hold[0], &c, 1) > 0) {
      }
      ::_exit(0);  // no destructors: what it made stays (the test's bus removes it)
    }
    ::close(out[1]);
    ::close(hold[0]);
    hold_ = hold[1];
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) output_.append(buf, size_t(n));
    ::close(out[0]);
  }
  ~Stranger() {
    ::close(hold_);
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
  }
  Stranger(const Stranger&) = delete;
  Stranger& operator=(const Stranger&) = delete;
  const std::string& output() const { return output_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int hold_ = -1;
  std::string output_;
};

/// What a reader writes out to be announced: "token pid n line".
std::string to_text(const AdmissionRequest& r) {
  std::ostringstream s;
  s << r.token << ' ' << r.pid << ' ' << r.n << ' ' << r.line;
  return s.str();
}
AdmissionRequest from_text(const std::string& text) {
  AdmissionRequest r;
  std::istringstream s(text);
  s >> r.token >> r.pid >> r.n >> r.line;
  return r;
}

/// In a child process: a reader segment in group `group`, with a line on our ring.
std::string reader_in_child(const std::string& bus, int64_t group) {
  // Never destroyed: the process ends with _exit and its segment stays, as a killed reader's.
  ReaderSegment* segment = ReaderSegment::create(bus, group).release();
  CursorLine* line = segment->claim_line(kPublisher, kRingSlot);
  line->position.store(640, std::memory_order_release);
  return to_text(announce(*segment, line));
}

TEST(ReaderAdmissionTest, AnHonestReaderIsAdmittedAndItsLaterPositionsShowThroughItsLine) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name, 100);
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {uint32_t(::geteuid()), -1, 0600});
  std::string why;
  const std::optional<AdmittedReader> admitted = admissions.admit(reader.request, &why);
  ASSERT_TRUE(admitted.has_value()) << why;
  EXPECT_EQ(admitted->token, reader.segment->header()->token);
  EXPECT_EQ(admitted->pid, uint32_t(::getpid()));
  EXPECT_EQ(admitted->uid, uint32_t(::geteuid()));
  EXPECT_EQ(admitted->n, reader.request.n);
  EXPECT_EQ(admitted->line_index, reader.request.line);
  EXPECT_EQ(admitted->start_time, detail::process_start_time(::getpid()));
  struct stat st {};
  ASSERT_EQ(::stat(shm(reader.segment->name()).c_str(), &st), 0);
  EXPECT_EQ(admitted->ino, uint64_t(st.st_ino));
  EXPECT_FALSE(admitted->damaged());
  EXPECT_EQ(admissions.mapped_segments(), 1u);

  ASSERT_NE(admitted->line, reader.line) << "our own mapping, not the reader's";
  EXPECT_EQ(admitted->line->position.load(std::memory_order_acquire), 100u);
  reader.line->position.store(4096, std::memory_order_release);
  EXPECT_EQ(admitted->line->position.load(std::memory_order_acquire), 4096u);
  EXPECT_EQ(admitted->line->publisher_id.load(std::memory_order_relaxed), kPublisher);

  admissions.release(*admitted);
  EXPECT_EQ(admissions.mapped_segments(), 0u);
  admissions.release(*admitted);  // twice: harmless
  EXPECT_EQ(admissions.mapped_segments(), 0u);
}

TEST(ReaderAdmissionTest, LinesOfOneSegmentShareOneMappingWhichGoesWithTheLastOfThem) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name, 100);
  const AdmissionRequest first = reader.request;
  reader.claim(200);  // a second line on our ring (a second Subscriber of it in this process)
  const AdmissionRequest second = reader.request;
  ASSERT_NE(first.line, second.line);
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});

  std::optional<AdmittedReader> a = admissions.admit(first);
  ASSERT_TRUE(a.has_value());
  std::optional<AdmittedReader> b = admissions.admit(second);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(admissions.mapped_segments(), 1u) << "the second line reuses the first's mapping";
  EXPECT_EQ(b->line->position.load(std::memory_order_acquire), 200u);

  std::string why;
  EXPECT_FALSE(admissions.admit(first, &why).has_value()) << "an announcement replayed takes no second attachment";
  EXPECT_NE(why.find("line " + std::to_string(first.line) + " is admitted already"), std::string::npos) << why;

  admissions.release(*a);
  EXPECT_EQ(admissions.mapped_segments(), 1u) << "the second line still uses it";
  a = admissions.admit(first);  // a rejoin after eviction: no new mapping
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(admissions.mapped_segments(), 1u);
  EXPECT_EQ(a->line->position.load(std::memory_order_acquire), 100u);

  admissions.release(*a);
  admissions.release(*b);
  EXPECT_EQ(admissions.mapped_segments(), 0u) << "unmapped with its last line";
  b = admissions.admit(second);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(admissions.mapped_segments(), 1u);
}

TEST(ReaderAdmissionTest, AnAnnouncementThatDoesNotMatchTheSegmentOrItsLineIsRefused) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name, 100);
  const AdmissionRequest honest = reader.request;
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});
  ASSERT_EQ(refusal(admissions, honest), "admitted");

  auto expect_refused = [&](const AdmissionRequest& request, const std::string& reason) {
    const std::string why = refusal(admissions, request);
    EXPECT_NE(why.find(reason), std::string::npos) << "expected \"" << reason << "\", got: " << why;
    EXPECT_EQ(admissions.mapped_segments(), 0u) << "a refusal leaves nothing mapped";
  };
  AdmissionRequest r = honest;
  r.token ^= 1;
  expect_refused(r, "token differs from the announced one");
  r.token = 0;
  expect_refused(r, "token 0 is no segment's");
  r = honest;
  r.line = detail::kReaderLines;
  expect_refused(r, "line 64 is past its 64 lines");
  r.line = UINT32_MAX - 1;
  expect_refused(r, "is past its 64 lines");
  // kNoLine asks only who the reader is (a reader giving up a reservation):
  // attested all the same, and nothing stays mapped.
  r.line = detail::kNoLine;
  const std::optional<AdmittedReader> who = admissions.admit(r);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->line, nullptr);
  EXPECT_EQ(who->pid, honest.pid);
  EXPECT_EQ(admissions.mapped_segments(), 0u);
  r.token ^= 1;
  expect_refused(r, "token differs from the announced one");
  r = honest;
  r = honest;
  r.pid = 0;
  expect_refused(r, "pid 0 is no process");
  r.pid = 0x80000000u;
  expect_refused(r, "is no process");
  r.pid = 0x7ffffff0u;  // past any pid_max: no such segment
  expect_refused(r, "cannot open: No such file or directory");
  r = honest;
  r.n = 999;  // no such segment of ours
  expect_refused(r, "cannot open: No such file or directory");

  // A line for another ring: another writer's, or another ring slot.
  reader.claim(100, kPublisher + 1, kRingSlot);
  expect_refused(reader.request, "reads ring (" + std::to_string(kPublisher + 1) + ", 7), not ours");
  reader.claim(100, kPublisher, kRingSlot + 1);
  expect_refused(reader.request, "), not ours");
  // A free line (its key 0).
  r = honest;
  r.line = reader.request.line + 1;
  ASSERT_EQ(reader.segment->header()->line[r.line].publisher_id.load(), 0u);
  expect_refused(r, "reads ring (0, 0), not ours");
  // A line that left our ring (kLineLeft, its key still ours).
  reader.claim(100);
  reader.line->position.store(detail::kLineLeft, std::memory_order_release);
  expect_refused(reader.request, "has left our ring");

  ASSERT_EQ(refusal(admissions, honest), "admitted") << "the segment itself is fine";
}

TEST(ReaderAdmissionTest, ASegmentOthersMayWriteIsRefused) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name);
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});
  const std::string path = shm(reader.segment->name());
  for (const mode_t mode : {mode_t(0660), mode_t(0642), mode_t(0620)}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    const std::string why = refusal(admissions, reader.request);
    EXPECT_NE(why.find(" lets others write it"), std::string::npos) << std::oct << mode << ": " << why;
  }
  ASSERT_EQ(::chmod(path.c_str(), 0660), 0);
  EXPECT_NE(refusal(admissions, reader.request).find(": mode rw-rw---- lets others write it"), std::string::npos);
  for (const mode_t mode : {mode_t(0640), mode_t(0644), mode_t(0600)}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    EXPECT_EQ(refusal(admissions, reader.request), "admitted") << std::oct << mode;
  }
}

TEST(ReaderAdmissionTest, AForgedHeaderOrAFileThatIsNoReaderSegmentIsRefused) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name);  // its header is the model: our pid, token and start time
  const ReaderHeader& model = *reader.segment->header();
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});
  uint32_t n = 100;
  auto expect = [&](const std::string& name, const std::string& reason) {
    AdmissionRequest r = reader.request;
    r.n = uint32_t(std::strtoul(name.c_str() + name.rfind('.') + 1, nullptr, 10));
    const std::string why = refusal(admissions, r);
    if (reason == "admitted") {
      EXPECT_EQ(why, reason) << name;
    } else {
      EXPECT_NE(why.find(reason), std::string::npos) << name << ": expected \"" << reason << "\", got: " << why;
    }
    EXPECT_EQ(admissions.mapped_segments(), 0u);
  };
  // A faithful copy is admitted: what the cases below change is what they test.
  const auto keep = [](ReaderHeader&) {};
  expect(forge(bus.name, n++, model, keep), "admitted");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.magic.store(h.magic.load() + 1); }),
         "is no reader segment (magic)");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.layout_version = detail::kLayoutVersion - 1; }),
         "layout version ");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.lines = detail::kReaderLines * 2; }),
         "holds 128 lines, not 64");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.pid += 1; }), ", not the announced one");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.token += 1; }), "token differs from the announced one");
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.start_time = 0; }), "gives no start time");
  // Our pid with another start time: an earlier process of that pid.
  expect(forge(bus.name, n++, model, [](ReaderHeader& h) { h.start_time -= 1; }), ") is gone");
  expect(forge(bus.name, n++, model, keep, 100), "holds 100 bytes, less than a reader segment's");

  // Names that are not regular files; a FIFO would block an open without O_NONBLOCK.
  const std::string dir = segment_name(bus.name, uint32_t(::getpid()), n++);
  ASSERT_EQ(::mkdir(shm(dir).c_str(), 0750), 0);
  expect(dir, "is not a regular file");
  ASSERT_EQ(::rmdir(shm(dir).c_str()), 0);
  const std::string fifo = segment_name(bus.name, uint32_t(::getpid()), n++);
  ASSERT_EQ(::mkfifo(shm(fifo).c_str(), 0640), 0);
  expect(fifo, "is not a regular file");
  const std::string link = segment_name(bus.name, uint32_t(::getpid()), n++);
  ASSERT_EQ(::symlink(shm(reader.segment->name()).c_str(), shm(link).c_str()), 0);
  expect(link, "is a symbolic link");
}

// A process that ended leaves its segment behind (killed, or _exit without
// destructors): its positions hold nobody back.
TEST(ReaderAdmissionTest, TheSegmentOfAProcessThatDiedIsRefused) {
  ScopedBusName bus("adm");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    std::string out;
    try {
      out = reader_in_child(bus.name, -1);  // stays: no destructors below
    } catch (const std::exception& e) {
      out = e.what();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t got;
  while ((got = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(got));
  ::close(fds[0]);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  const AdmissionRequest request = from_text(out);
  ASSERT_EQ(request.pid, uint32_t(child)) << out;
  ASSERT_TRUE(detail::Segment::exists(segment_name(bus.name, request.pid, request.n))) << "it outlives its process";

  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});
  const std::string why = refusal(admissions, request);
  EXPECT_NE(why.find("is gone"), std::string::npos) << why;
  EXPECT_EQ(admissions.mapped_segments(), 0u);
}

// Another uid makes a segment under our name (our pid, an n we do not use
// yet), with our token, pid and start time in its header: it is not ours,
// the kernel says so (its owner is not the euid of the process it names).
TEST(ReaderAdmissionTest, ASegmentSquattedUnderAVictimsPidByAnotherUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ScopedBusName bus("adm");
  OwnReader victim(bus.name);
  alignas(ReaderHeader) unsigned char model[sizeof(ReaderHeader)];
  std::memcpy(model, victim.segment->header(), sizeof model);
  const std::string squat = segment_name(bus.name, uint32_t(::getpid()), 900);
  Stranger squatter({kTopicGroup}, [&] {
    detail::Segment seg = detail::Segment::create(squat, sizeof(ReaderHeader), 0640, kTopicGroup);
    std::memcpy(seg.data(), model, sizeof model);
    return std::string("ok");
  });
  ASSERT_EQ(squatter.output(), "ok");
  struct stat st {};
  ASSERT_EQ(::stat(shm(squat).c_str(), &st), 0);
  ASSERT_EQ(st.st_uid, kStrangerUid);
  ASSERT_EQ(st.st_gid, kTopicGroup) << "in the topic's group: only its owner's euid gives it away";

  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, int64_t(kTopicGroup), 0640});
  AdmissionRequest forged = victim.request;
  forged.n = 900;
  const std::string why = refusal(admissions, forged);
  EXPECT_NE(why.find("owner uid 54321, but process " + std::to_string(::getpid()) + " runs as uid 0"),
            std::string::npos)
      << why;
  EXPECT_EQ(refusal(admissions, victim.request), "admitted") << "the victim's own segment";
}

// A reader of another uid, alive: admitted only if it may read the topic
// (the kernel's proof: its segment's group is the topic's), or the topic is
// world-readable, or it is the topic's owner.
TEST(ReaderAdmissionTest, AnotherUsersSegmentIsAdmittedOnlyIfItMayReadTheTopic) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  ASSERT_EQ(::getgrgid(kTopicGroup), nullptr);
  ScopedBusName bus("adm");
  const ReaderRule topic{0, int64_t(kTopicGroup), 0640};
  {
    Stranger outsider({}, [&] { return reader_in_child(bus.name, -1); });
    const AdmissionRequest request = from_text(outsider.output());
    ASSERT_EQ(request.pid, uint32_t(outsider.pid())) << outsider.output();
    struct stat st {};
    ASSERT_EQ(::stat(shm(segment_name(bus.name, request.pid, request.n)).c_str(), &st), 0);
    ASSERT_EQ(st.st_gid, kStrangerGid);
    ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, topic);
    const std::string why = refusal(admissions, request);
    EXPECT_NE(why.find("owner uid 54321, group 54321: may not read this topic (owner uid 0, group 54322, mode "
                       "rw-r-----)"),
              std::string::npos)
        << why;
    ReaderAdmissions world(bus.name, kPublisher, kRingSlot, {0, int64_t(kTopicGroup), 0644});
    EXPECT_EQ(refusal(world, request), "admitted") << "a world-readable topic";
    ReaderAdmissions owner(bus.name, kPublisher, kRingSlot, {kStrangerUid, -1, 0600});
    EXPECT_EQ(refusal(owner, request), "admitted") << "the topic's owner";
  }
  {
    Stranger member({kTopicGroup}, [&] { return reader_in_child(bus.name, kTopicGroup); });
    const AdmissionRequest request = from_text(member.output());
    ASSERT_EQ(request.pid, uint32_t(member.pid())) << member.output();
    ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, topic);
    std::string why;
    const std::optional<AdmittedReader> admitted = admissions.admit(request, &why);
    ASSERT_TRUE(admitted.has_value()) << why;
    EXPECT_EQ(admitted->uid, kStrangerUid);
    EXPECT_EQ(admitted->pid, uint32_t(member.pid()));
    EXPECT_EQ(admitted->start_time, detail::process_start_time(member.pid()));
    EXPECT_EQ(admitted->line->position.load(std::memory_order_acquire), 640u);
    admissions.release(*admitted);
  }
}

// /proc mounted with hidepid=1 shows the writer that a reader's process
// exists, not its status: without its euid the writer cannot bind the
// segment to the process, and refuses it.
TEST(ReaderAdmissionTest, AReaderWhoseProcessProcHidesFromTheWriterIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user and mount /proc";
  ScopedBusName bus("adm");
  OwnReader reader(bus.name, 100, int64_t(kTopicGroup));  // root's, in the topic's group: the writer may open it
  const AdmissionRequest request = reader.request;
  auto admit = [&] {
    ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, int64_t(kTopicGroup), 0640});
    return refusal(admissions, request);
  };
  // In the child's own mount namespace, private, so that the host's /proc is left as it is.
  auto hide_proc = []() -> std::string {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=1") != 0) {
      std::string out = "cannot mount /proc: ";
      out.append(std::strerror(errno));
      return out;
    }
    return {};
  };
  EXPECT_EQ(Stranger({kTopicGroup}, admit).output(), "admitted") << "a writer of another uid that /proc shows it to";
  const std::string hidden = Stranger({kTopicGroup}, admit, hide_proc).output();
  if (hidden.rfind("cannot mount /proc", 0) == 0) GTEST_SKIP() << hidden;
  EXPECT_NE(hidden.find("its process " + std::to_string(::getpid()) + " is gone or hidden from us (/proc)"),
            std::string::npos)
      << hidden;
}

// A reader may truncate its own segment under the writer's mapping: the
// writer must not die of SIGBUS; it reads 0 and sees the damage.
TEST(ReaderAdmissionTest, ASegmentCutShortAfterAdmissionReadsZeroAndSaysItIsDamaged) {
  ScopedBusName bus("adm");
  OwnReader reader(bus.name, 300);
  ReaderAdmissions admissions(bus.name, kPublisher, kRingSlot, {0, -1, 0600});
  std::optional<AdmittedReader> admitted = admissions.admit(reader.request);
  ASSERT_TRUE(admitted.has_value());
  ASSERT_EQ(admitted->line->position.load(std::memory_order_acquire), 300u);
  EXPECT_FALSE(admitted->damaged());

  const int fd = ::open(shm(reader.segment->name()).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 0), 0);  // the reader's own mapping must not be touched from here on
  ::close(fd);
  reader.line = nullptr;

  EXPECT_EQ(admitted->line->position.load(std::memory_order_acquire), 0u) << "read, not killed";
  EXPECT_TRUE(admitted->damaged());
  const std::string why = refusal(admissions, reader.request);
  EXPECT_NE(why.find("holds 0 bytes"), std::string::npos) << why;
  admissions.release(*admitted);
  EXPECT_EQ(admissions.mapped_segments(), 0u);
}

}  // namespace
}  // namespace flowbus::testing
