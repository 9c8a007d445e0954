// `flowbus inspect` views run as the real binary: --dump, --check, --watch
// (in a pseudo-terminal, quit with q), and their errors.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "bus_state.hpp"
#include "cli_helpers.hpp"
#include "flowbus/detail/layout.hpp"

using namespace flowbus;
using namespace flowbus::testing;

namespace {

/// A bus with orders.created holding `n` orders with ids 0..n-1, published by "shop".
struct ShopBus : OrdersBus {
  explicit ShopBus(int n) {
    std::string lines;
    for (int i = 0; i < n; ++i)
      lines += R"({"id":)" + std::to_string(i) + R"(,"customer":"acme","sku":"A-1","quantity":2,"price_cents":1999})" + "\n";
    const std::string file = "/tmp/" + name.name + ".jsonl";
    FILE* f = std::fopen(file.c_str(), "w");
    std::fputs(lines.c_str(), f);
    std::fclose(f);
    const Outcome o = flowbus_cli({"pub", name.name, "orders.created", "--file", file, "--name", "shop"});
    EXPECT_EQ(o.exit_code, 0) << describe(o);
    std::remove(file.c_str());
  }
};

/// Runs flowbus as a user who may not read a segment the test took the read
/// bits from (chmod 0): as root (who reads anyway), in a child that drops to
/// uid and gid 65534 first; otherwise as ourselves.
Outcome flowbus_cli_unprivileged(const std::vector<std::string>& args) {
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) return {};
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                             ::setresuid(65534, 65534, 65534) != 0))
      _exit(126);
    std::vector<char*> argv{const_cast<char*>(kCli.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kCli.c_str(), argv.data());
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Outcome o;
  o.pid = child;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&o.out, &o.err};
  for (int open = 2; open > 0 && ::poll(fds, 2, 30000) > 0;) {
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, size_t(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  o.finished = true;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

}  // namespace

TEST(InspectCliTest, DumpPrintsTheLastEventsDecodedThroughTheRegisteredSchema) {
  ShopBus bus(12);
  const Outcome o = flowbus_cli({"inspect", bus.name.name, "orders.created", "--dump", "3", "--json"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 3u) << describe(o);
  for (size_t i = 0; i < 3; ++i) {
    Json j(lines[i]);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << lines[i];
    const auto root = j.root();
    EXPECT_EQ(root["flowbusseq"].AsUInt64(), 9 + i);
    EXPECT_EQ(root["data"].AsMap()["id"].AsUInt64(), 9 + i);
    EXPECT_EQ(str(root["data"].AsMap(), "customer"), "acme");
    EXPECT_EQ(str(root, "type"), "examples.Order");
    EXPECT_TRUE(ends_with(str(root, "source"), "/" + bus.name.name + "/shop"));
  }
  const Outcome earliest = flowbus_cli({"inspect", bus.name.name, "orders.created", "--dump", "2", "--from", "earliest"});
  ASSERT_EQ(earliest.exit_code, 0) << describe(earliest);
  const auto first = lines_of(earliest.out);
  ASSERT_EQ(first.size(), 2u) << describe(earliest);
  EXPECT_NE(first[0].find("\"id\": 0"), std::string::npos) << first[0];
  EXPECT_NE(first[1].find("\"id\": 1"), std::string::npos) << first[1];
}

TEST(InspectCliTest, DumpRawShowsTheRecordHeaderAndItsBytesInHex) {
  ShopBus bus(2);
  const Outcome o = flowbus_cli({"inspect", bus.name.name, "orders.created", "--dump", "1", "--raw"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_GE(lines.size(), 3u) << describe(o);
  // The second record of a fresh ring: its position is the first record's length, its commit that plus one.
  EXPECT_EQ(lines[0].rfind("record @", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("seq 1"), std::string::npos) << lines[0];
  const uint64_t position = std::stoull(lines[0].substr(8));
  char commit[64];
  std::snprintf(commit, sizeof commit, "commit 0x%llx", static_cast<unsigned long long>(position + 1));
  EXPECT_NE(lines[0].find(commit), std::string::npos) << lines[0];
  // The first 8 bytes are that commit word, little-endian.
  char first_bytes[64];
  std::snprintf(first_bytes, sizeof first_bytes, "  000000  %02llx %02llx", static_cast<unsigned long long>((position + 1) & 0xff),
                static_cast<unsigned long long>(((position + 1) >> 8) & 0xff));
  EXPECT_EQ(lines[1].rfind(first_bytes, 0), 0u) << lines[1];
}

TEST(InspectCliTest, DumpFollowPrintsEventsPublishedAfterItStarted) {
  ShopBus bus(1);
  ChildProcess dump({kCli, "inspect", bus.name.name, "orders.created", "--dump", "1", "--follow", "--json"},
                    {.pipe_stdin = false, .capture_stderr = true});
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(bus.pub(R"({"id":77,"customer":"late","sku":"B","quantity":1,"price_cents":5})", {"--name", "shop"}).exit_code, 0);
  std::this_thread::sleep_for(300ms);
  dump.signal(SIGINT);
  const Outcome o = dump.communicate(10s);
  ASSERT_TRUE(o.finished);
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  const auto lines = lines_of(o.out);
  ASSERT_EQ(lines.size(), 2u) << describe(o);
  EXPECT_NE(lines[1].find("\"customer\": \"late\""), std::string::npos) << lines[1];
}

TEST(InspectCliTest, DumpFollowReadsAPublisherThatStartsAfterItFromItsFirstEvent) {
  ShopBus bus(1);  // so that the dump prints a line once it runs
  ChildProcess dump({kCli, "inspect", bus.name.name, "orders.created", "--dump", "1", "--follow", "--json"},
                    {.pipe_stdin = false, .capture_stderr = true});
  ASSERT_TRUE(dump.read_line(10s)) << "the dump did not start";
  const std::string file = "/tmp/" + bus.name.name + "-late.jsonl";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    for (int i = 0; i < 3; ++i) std::fprintf(f, R"({"id":%d,"customer":"late","sku":"B","quantity":1})" "\n", i);
    std::fclose(f);
  }
  // A new ring, all three events in it well before the dump looks for new rings (once a second).
  const Outcome pub = flowbus_cli({"pub", bus.name.name, "orders.created", "--file", file, "--name", "late"});
  std::remove(file.c_str());
  ASSERT_EQ(pub.exit_code, 0) << describe(pub);
  std::vector<std::string> late;
  for (int i = 0; i < 3; ++i)
    if (auto line = dump.read_line(5s)) late.push_back(*line);
  dump.signal(SIGINT);
  const Outcome o = dump.communicate(10s);
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  EXPECT_EQ(o.err, "");  // nothing was missed
  ASSERT_EQ(late.size(), 3u) << describe(o);
  for (size_t i = 0; i < 3; ++i) {
    Json j(late[i]);
    ASSERT_TRUE(j.ok()) << j.error() << "\n" << late[i];
    EXPECT_EQ(j.root()["flowbusseq"].AsUInt64(), i) << late[i];
    EXPECT_EQ(str(j.root()["data"].AsMap(), "customer"), "late") << late[i];
  }
}

TEST(InspectCliTest, DumpErrorsSayWhatToDo) {
  ShopBus bus(1);
  const Outcome no_topic = flowbus_cli({"inspect", bus.name.name, "no.such", "--dump", "1"});
  EXPECT_EQ(no_topic.exit_code, 1);
  EXPECT_NE(no_topic.err.find("has no topic 'no.such'"), std::string::npos) << describe(no_topic);
  const Outcome missing_topic = flowbus_cli({"inspect", bus.name.name, "--dump", "1"});
  EXPECT_NE(missing_topic.exit_code, 0);
  EXPECT_NE(missing_topic.err.find("--dump N needs a TOPIC"), std::string::npos) << describe(missing_topic);
}

TEST(InspectCliTest, CheckPassesAHealthyBusAndFailsADamagedOneNamingThePlace) {
  ShopBus bus(20);
  const Outcome ok = flowbus_cli({"inspect", bus.name.name, "--check", "--json"});
  ASSERT_EQ(ok.exit_code, 0) << describe(ok);
  Json j(ok.out);
  ASSERT_TRUE(j.ok()) << j.error() << "\n" << ok.out;
  EXPECT_TRUE(j.root()["ok"].AsBool());
  EXPECT_EQ(j.root()["records"].AsUInt64(), 20u);

  {  // zero the commit word of the first record
    auto seg = detail::Segment::open(detail::data_segment_name(bus.name.name, "orders.created", "shop"), detail::Access::ReadWrite);
    std::memset(seg.data() + detail::kRecordsOffset, 0, 8);
  }
  const Outcome bad = flowbus_cli({"inspect", bus.name.name, "--check"});
  EXPECT_EQ(bad.exit_code, 1) << describe(bad);
  EXPECT_NE(bad.out.find("ring orders.created@shop: record at position 0 (offset 0): commit word 0x0 is not position + 1 = 0x1"),
            std::string::npos)
      << describe(bad);
  const Outcome dump = flowbus_cli({"inspect", bus.name.name, "orders.created", "--dump", "5", "--from", "earliest"});
  EXPECT_EQ(dump.exit_code, 1) << describe(dump);
  EXPECT_NE(dump.err.find("is damaged here; `flowbus inspect " + bus.name.name + " --check`"), std::string::npos) << describe(dump);
}

TEST(InspectCliTest, CheckListsARingTheUserMayNotReadApartFromDamage) {
  ScopedBusName name("perm");
  const std::string schema = example_schema("order.fbs");
  for (const char* topic : {"open.orders", "private.orders"})  // the bus (0644) and open.orders readable by all
    ASSERT_EQ(flowbus_cli({"topic", "create", name.name, topic, "--schema", schema, "--mode", "0644"}).exit_code, 0);
  for (const char* topic : {"open.orders", "private.orders"})
    ASSERT_EQ(flowbus_cli({"pub", name.name, topic, "--json", kOrderJson, "--name", "shop"}).exit_code, 0);
  const std::string data = "/dev/shm/" + detail::data_segment_name(name.name, "private.orders", "shop");
  ASSERT_EQ(::chmod(data.c_str(), 0), 0);
  const std::string uid = std::to_string(::geteuid() == 0 ? 65534 : ::geteuid());

  const Outcome text = flowbus_cli_unprivileged({"inspect", name.name, "--check"});
  EXPECT_EQ(text.exit_code, 0) << describe(text);
  EXPECT_NE(text.out.find("checked 2 topics, 1 rings, 1 records"), std::string::npos) << describe(text);
  EXPECT_NE(text.out.find("not checked: 1 ring(s) you may not read (not damage"), std::string::npos) << describe(text);
  EXPECT_NE(text.out.find("  ring private.orders@shop: not readable by you (uid " + uid + ", mode ---------, owner uid "),
            std::string::npos) << describe(text);
  EXPECT_NE(text.out.find("ok: every invariant holds in what you may read"), std::string::npos) << describe(text);
  EXPECT_EQ(text.out.find("problem"), std::string::npos) << describe(text);
  EXPECT_EQ(text.out.find("gc --force"), std::string::npos) << describe(text);

  // The plain view shows no figures for it (not a SEQ 0 that looks real), and why.
  const Outcome view = flowbus_cli_unprivileged({"inspect", name.name});
  EXPECT_EQ(view.exit_code, 0) << describe(view);
  const size_t row = view.out.find("private.orders@shop");
  ASSERT_NE(row, std::string::npos) << describe(view);
  const std::string line = view.out.substr(row, view.out.find('\n', row) - row);
  EXPECT_NE(line.find(" ? "), std::string::npos) << line;
  EXPECT_EQ(line.find(" 0 "), std::string::npos) << line;
  EXPECT_NE(view.out.find("      not read: ", row), std::string::npos) << describe(view);

  const Outcome json = flowbus_cli_unprivileged({"inspect", name.name, "--check", "--json"});
  EXPECT_EQ(json.exit_code, 0) << describe(json);
  Json j(json.out);
  ASSERT_TRUE(j.ok()) << j.error() << "\n" << json.out;
  EXPECT_TRUE(j.root()["ok"].AsBool());
  EXPECT_EQ(j.root()["findings"].AsVector().size(), 0u);
  ASSERT_EQ(j.root()["unreadable"].AsVector().size(), 1u) << json.out;
  EXPECT_EQ(str(j.root()["unreadable"].AsVector()[0].AsMap(), "where"), "ring private.orders@shop");
}

namespace {

/// `flowbus inspect BUS --json`, parsed; fails the test if it is not JSON.
flexbuffers::Vector subscriptions_of(const std::string& bus, Json& holder) {
  const Outcome o = flowbus_cli({"inspect", bus, "--json", "--rate-window", "0"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  holder = Json(o.out);
  EXPECT_TRUE(holder.ok()) << holder.error() << "\n" << o.out;
  return holder.ok() ? holder.root()["subscriptions"].AsVector() : flexbuffers::Vector::EmptyVector();
}

}  // namespace

TEST(InspectCliTest, SubscriptionsAreShownWithTheirProcessAndTheRingsTheyRead) {
  OrdersBus bus;
  ChildProcess sub({kCli, "sub", bus.name.name, "orders.>", "--count", "100", "--timeout", "30"},
                   {.pipe_stdin = false, .capture_stderr = true});
  Json j("{}");
  for (int i = 0; i < 500 && subscriptions_of(bus.name.name, j).size() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(subscriptions_of(bus.name.name, j).size(), 1u) << "the subscriber never registered";
  ASSERT_EQ(bus.pub(kOrderJson, {"--name", "shop"}).exit_code,
            0);  // its ring reserves an attachment for the subscription
  ASSERT_TRUE(sub.read_line(10s)) << "the subscriber did not get the event";

  auto subs = subscriptions_of(bus.name.name, j);
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(str(subs[0].AsMap(), "pattern"), "orders.>");
  EXPECT_EQ(subs[0].AsMap()["pid"].AsInt64(), sub.pid());
  EXPECT_TRUE(subs[0].AsMap()["alive"].AsBool());
  EXPECT_EQ(subs[0].AsMap()["rings_attached"].AsUInt64(), 1u);
  EXPECT_EQ(subs[0].AsMap()["rings_reserved"].AsUInt64(), 1u);
  const Outcome text = flowbus_cli({"inspect", bus.name.name, "--rate-window", "0"});
  EXPECT_NE(text.out.find("SUBSCRIPTION (pattern)"), std::string::npos) << describe(text);
  char row[160];
  std::snprintf(row, sizeof row, "%-34s %8d %-6s attached 1, reserved for it 1", "orders.>", int(sub.pid()), "live");
  EXPECT_NE(text.out.find(row), std::string::npos) << row << "\n" << describe(text);

  sub.signal(SIGKILL);  // nobody has cleaned up after it yet
  (void)sub.wait(10s);
  subs = subscriptions_of(bus.name.name, j);
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_FALSE(subs[0].AsMap()["alive"].AsBool());
  EXPECT_EQ(subs[0].AsMap()["pid"].AsInt64(), sub.pid());
}

namespace {

using Runner = std::function<Outcome(const std::vector<std::string>&)>;

/// All that `flowbus inspect` says about `bus`: its table, --check, --json,
/// and its line in the list of buses.
std::string all_inspect_says(const std::string& bus, const Runner& run) {
  std::string all;
  for (const std::vector<std::string>& args : {std::vector<std::string>{"inspect", bus, "--rate-window", "0"},
                                               std::vector<std::string>{"inspect", bus, "--check"},
                                               std::vector<std::string>{"inspect", bus, "--json", "--rate-window", "0"}}) {
    const Outcome o = run(args);
    all += "$ flowbus " + args[0] + " " + args[1] + " " + args[2] + " (exit " + std::to_string(o.exit_code) + ")\n" + o.out + o.err;
  }
  const Outcome list = run({"inspect"});
  for (const std::string& line : lines_of(list.out + list.err))
    if (line.find(bus) != std::string::npos) all += line + "\n";
  return all;
}

const Runner as_us = [](const std::vector<std::string>& args) { return flowbus_cli(args); };
const Runner as_unprivileged = [](const std::vector<std::string>& args) { return flowbus_cli_unprivileged(args); };

detail::DirectoryLayout* directory_of(detail::Segment& dir) { return reinterpret_cast<detail::DirectoryLayout*>(dir.data()); }

}  // namespace

TEST(InspectCliTest, NoMessageAdvisesRemovingTheBusUnlessItIsDamaged) {
  ChildProcess alive({"/bin/sleep", "30"}, {.pipe_stdin = false});  // a creator, a remover: at work

  {  // a ring the user may not read
    ScopedBusName name("advice");
    for (const char* topic : {"open.orders", "private.orders"}) {
      ASSERT_EQ(flowbus_cli({"topic", "create", name.name, topic, "--schema", example_schema("order.fbs"), "--mode", "0644"}).exit_code, 0);
      ASSERT_EQ(flowbus_cli({"pub", name.name, topic, "--json", kOrderJson, "--name", "shop"}).exit_code, 0);
    }
    ASSERT_EQ(::chmod(("/dev/shm/" + detail::data_segment_name(name.name, "private.orders", "shop")).c_str(), 0), 0);
    const std::string said = all_inspect_says(name.name, as_unprivileged);
    EXPECT_NE(said.find("not readable by you"), std::string::npos) << said;
    EXPECT_EQ(said.find("--force"), std::string::npos) << said;
  }
  {  // topics made before any publisher, and no process on the bus: configuration, not garbage
    OrdersBus bus;
    const std::string said = all_inspect_says(bus.name.name, as_us);
    EXPECT_NE(said.find("no live process uses bus"), std::string::npos) << said;
    EXPECT_EQ(said.find("--force"), std::string::npos) << said;
  }
  {  // a ring that a live gc is removing: its segments are gone, its slot not yet
    ShopBus bus(3);
    auto dir = detail::Segment::open(detail::directory_segment_name(bus.name.name), detail::Access::ReadWrite);
    for (auto& ring : directory_of(dir)->rings)
      if (detail::SlotWord::state(ring.state.load()) == detail::kReady) ring.owner.store(detail::removing_owner(uint32_t(alive.pid())));
    detail::Segment::remove(detail::data_segment_name(bus.name.name, "orders.created", "shop"));
    detail::Segment::remove(detail::control_segment_name(bus.name.name, "orders.created", "shop"));
    const std::string said = all_inspect_says(bus.name.name, as_us);
    EXPECT_NE(said.find("--check (exit 0)"), std::string::npos) << said;
    EXPECT_NE(said.find("ring orders.created@shop: being removed by pid " + std::to_string(alive.pid()) + " right now"),
              std::string::npos) << said;
    EXPECT_EQ(said.find("--force"), std::string::npos) << said;
  }
  {  // a ring a live publisher is creating (its slot Claiming, its data segment not sized yet), and a bus
     // whose live creator has not linked its directory into place yet
    ShopBus bus(3);
    auto dir = detail::Segment::open(detail::directory_segment_name(bus.name.name), detail::Access::ReadWrite);
    for (auto& ring : directory_of(dir)->rings) {
      const uint64_t w = ring.state.load();
      if (detail::SlotWord::state(w) != detail::kFree) continue;
      std::strcpy(ring.topic, "orders.created");
      std::strcpy(ring.publisher, "new");
      ring.state.store(detail::SlotWord::pack(detail::SlotWord::epoch(w) + 1, uint32_t(alive.pid()), detail::kClaiming));
      break;
    }
    const std::string unsized = "/dev/shm/" + detail::data_segment_name(bus.name.name, "orders.created", "new");
    ScopedBusName unlinked("advice");
    const std::string draft = "/dev/shm/" + detail::directory_segment_name(unlinked.name) + "@new." + std::to_string(alive.pid());
    for (const std::string& path : {unsized, draft}) ::close(::open(path.c_str(), O_CREAT | O_RDWR, 0600));
    const std::string said = all_inspect_says(bus.name.name, as_us) + all_inspect_says(unlinked.name, as_us);
    EXPECT_NE(said.find("--check (exit 0)"), std::string::npos) << said;
    EXPECT_EQ(said.find("--force"), std::string::npos) << said;
    ::unlink(unsized.c_str());
  }
  {  // damage: the advice is there
    ShopBus bus(3);
    auto data = detail::Segment::open(detail::data_segment_name(bus.name.name, "orders.created", "shop"), detail::Access::ReadWrite);
    std::memset(data.data() + detail::kRecordsOffset, 0, 8);  // the first record's commit word
    const Outcome check = flowbus_cli({"inspect", bus.name.name, "--check"});
    EXPECT_EQ(check.exit_code, 1) << describe(check);
    EXPECT_NE(check.out.find("`flowbus gc --force " + bus.name.name + "`"), std::string::npos) << describe(check);
    auto dir = detail::Segment::open(detail::directory_segment_name(bus.name.name), detail::Access::ReadWrite);
    directory_of(dir)->header.magic.store(42);
    const Outcome table = flowbus_cli({"inspect", bus.name.name});
    EXPECT_EQ(table.exit_code, 1) << describe(table);
    EXPECT_NE(table.err.find("`flowbus gc --force " + bus.name.name + "`"), std::string::npos) << describe(table);
  }
}

TEST(InspectCliTest, WatchWithoutATerminalPrintsFramesAndStops) {
  ShopBus bus(3);
  const Outcome o = flowbus_cli({"inspect", bus.name.name, "--watch", "--interval", "0.1", "--frames", "2"});
  ASSERT_EQ(o.exit_code, 0) << describe(o);
  size_t frames = 0;
  for (size_t at = 0; (at = o.out.find("flowbus inspect " + bus.name.name + " --watch", at)) != std::string::npos; ++at) ++frames;
  EXPECT_EQ(frames, 2u) << o.out;
  EXPECT_NE(o.out.find("orders.created@shop"), std::string::npos) << o.out;
  EXPECT_EQ(o.out.find("\x1b["), std::string::npos) << "no escape codes without a terminal";
}

TEST(InspectCliTest, WatchInATerminalQuitsOnQAndRestoresTheTerminal) {
  ShopBus bus(3);
  int master = -1;
  const pid_t child = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl(kCli.c_str(), kCli.c_str(), "inspect", bus.name.name.c_str(), "--watch", "--interval", "0.1", nullptr);
    _exit(127);
  }
  std::string screen;
  auto read_for = [&](std::chrono::milliseconds how_long) {
    const auto until = std::chrono::steady_clock::now() + how_long;
    while (std::chrono::steady_clock::now() < until) {
      pollfd fd{master, POLLIN, 0};
      if (::poll(&fd, 1, 20) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) return;
      screen.append(buf, size_t(n));
    }
  };
  read_for(800ms);
  EXPECT_NE(screen.find("\x1b[?1049h"), std::string::npos) << "takes the alternate screen";
  EXPECT_NE(screen.find("orders.created@shop"), std::string::npos) << screen;
  EXPECT_NE(screen.find("q or Ctrl-C quits"), std::string::npos) << screen;
  termios live{};
  ASSERT_EQ(::tcgetattr(master, &live), 0);
  EXPECT_EQ(live.c_lflag & (ICANON | ECHO), 0u) << "keys are read one by one, unechoed";
  ASSERT_EQ(::write(master, "q", 1), 1);
  read_for(500ms);
  int status = 0;
  for (int i = 0; i < 200 && ::waitpid(child, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
  termios after{};
  ASSERT_EQ(::tcgetattr(master, &after), 0);
  EXPECT_EQ(after.c_lflag & (ICANON | ECHO), tcflag_t(ICANON | ECHO)) << "line mode and echo are back";
  ::close(master);
  ASSERT_TRUE(WIFEXITED(status)) << "still running after q";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const size_t left = screen.rfind("\x1b[?1049l");
  ASSERT_NE(left, std::string::npos) << "leaves the alternate screen";
  EXPECT_NE(screen.find("\x1b[?25h", screen.rfind("\x1b[?25l")), std::string::npos) << "shows the cursor again";
}
