// Handles that cannot leak or be misused by accident (issue 18 item 5):
// moving publishers, subscribers and loans, and loans beside publishes.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/inspect.hpp"
#include "cursor_slots.hpp"
#include "test_bus.hpp"

using namespace flowbus;
using namespace flowbus::testing;

TEST(HandlesTest, MoveAssigningAPublisherGivesUpTheRingItHeld) {
  ScopedBusName name("handles");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Publisher a = bus.publisher("t", {"a"});
  Publisher b = bus.publisher("t", {"b"});
  ASSERT_EQ(publish_reading(a, 0), PublishStatus::Ok);
  a = std::move(b);  // "a"'s ring must be free again, not "held by live pid <ours>"
  Publisher again = bus.publisher("t", {"a"});
  EXPECT_EQ(again.next_sequence(), 1u);  // its ring, continued
  EXPECT_EQ(a.source(), again.source().substr(0, again.source().size() - 1) + "b");
  a = std::move(a);  // self-move keeps the handle working
  EXPECT_EQ(publish_reading(a, 0), PublishStatus::Ok);
}

TEST(HandlesTest, MoveAssigningASubscriberReleasesItsCursorsAndItsSubscription) {
  ScopedBusName name("handles");
  Bus bus = Bus::open(name.name);
  bus.create_topic(never_evicting("t"));
  bus.create_topic(never_evicting("u"));
  Publisher pub = bus.publisher("t", {"p"});
  Subscriber on_t = bus.subscribe("t");
  Subscriber on_u = bus.subscribe("u");
  EXPECT_EQ(owned_cursors(name.name, "t", "p"), 1);
  on_t = std::move(on_u);
  EXPECT_EQ(owned_cursors(name.name, "t", "p"), 0) << "a stale cursor would hold the writer for good";
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(publish_reading(pub, i), PublishStatus::Ok) << i;
  // Its subscription went too: a new ring on t reserves no cursor for it.
  Publisher late = bus.publisher("t", {"late"});
  EXPECT_EQ(owned_cursors(name.name, "t", "late"), 0);
  // The subscriber moved in still reads u, from a ring made after it subscribed.
  Publisher on_u_pub = bus.publisher("u", {"q"});
  EXPECT_EQ(owned_cursors(name.name, "u", "q"), 1);
  ASSERT_EQ(publish_reading(on_u_pub, 0), PublishStatus::Ok);
  EXPECT_EQ(on_t.poll([](const Event&) {}).delivered, 1u);
}

TEST(HandlesTest, NothingIsPublishedOverAnOpenLoanAndADroppedLoanFreesThePublisher) {
  ScopedBusName name("handles");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  std::vector<uint64_t> seqs;
  auto read_all = [&] {
    return sub.poll([&](const Event& e) { seqs.push_back(examples::GetSensorReading(e.data())->seq()); });
  };
  {
    Loan loan;
    ASSERT_EQ(pub.loan(256, loan), PublishStatus::Ok);
    loan.builder().Finish(examples::CreateSensorReadingDirect(loan.builder(), "loaned", "t", 1.0, 100));
    // The loan holds the bytes at the write position: nothing may go there.
    EXPECT_EQ(publish_reading(pub, 0), PublishStatus::LoanOpen);
    flatbuffers::FlatBufferBuilder fbb;
    build_reading(fbb, 0);
    const std::span<const uint8_t> one(fbb.GetBufferPointer(), fbb.GetSize());
    EXPECT_EQ(pub.try_publish_batch(std::span(&one, 1)).status, PublishStatus::LoanOpen);
    Loan other;
    EXPECT_EQ(pub.loan(64, other), PublishStatus::LoanOpen);
    EXPECT_EQ(pub.commit(other), PublishStatus::NoLoan);
    EXPECT_EQ(pub.commit(loan), PublishStatus::Ok);
    EXPECT_FALSE(loan);
    EXPECT_EQ(pub.commit(loan), PublishStatus::NoLoan);  // committed already
  }
  ASSERT_EQ(publish_reading(pub, 1), PublishStatus::Ok);
  {
    Loan dropped;
    ASSERT_EQ(pub.loan(256, dropped), PublishStatus::Ok);
    dropped.builder().Finish(examples::CreateSensorReadingDirect(dropped.builder(), "never", "t", 1.0, 999));
  }  // dropped without a commit: cancelled, nothing written
  ASSERT_EQ(publish_reading(pub, 2), PublishStatus::Ok);
  const PollResult r = read_all();
  EXPECT_EQ(seqs, (std::vector<uint64_t>{100, 1, 2}));
  EXPECT_EQ(r.missed, 0u);
  EXPECT_EQ(pub.next_sequence(), 3u);
  EXPECT_TRUE(check_bus(name.name).findings.empty());
}

TEST(HandlesTest, AMovedLoanKeepsAWorkingBuilder) {
  ScopedBusName name("handles");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t"));
  Subscriber sub = bus.subscribe("t");
  Publisher pub = bus.publisher("t");
  Loan a;
  ASSERT_EQ(pub.loan(1024, a), PublishStatus::Ok);
  Loan b = std::move(a);
  EXPECT_FALSE(a);
  auto& fbb = b.builder();
  fbb.Finish(examples::CreateSensorReadingDirect(fbb, "moved", "t", 2.5, 42));
  EXPECT_EQ(pub.commit(a), PublishStatus::NoLoan);
  EXPECT_EQ(pub.commit(b), PublishStatus::Ok);
  EXPECT_EQ(sub.poll([](const Event& e) {
    EXPECT_EQ(examples::GetSensorReading(e.data())->line()->str(), "moved");
    EXPECT_EQ(examples::GetSensorReading(e.data())->seq(), 42u);
  }).delivered, 1u);
}

TEST(HandlesTest, ALoanLargerThanTheRingCanEverHoldIsTooLarge) {
  ScopedBusName name("handles");
  Bus bus = Bus::open(name.name);
  bus.create_topic(sensor_topic("t", Policy::Block, 4096));
  Publisher pub = bus.publisher("t");
  Loan loan;
  EXPECT_EQ(pub.loan(SIZE_MAX, loan), PublishStatus::TooLarge);  // was Ok with capacity 0
  EXPECT_EQ(pub.loan(SIZE_MAX - 16, loan), PublishStatus::TooLarge);
  EXPECT_EQ(pub.loan(4096, loan), PublishStatus::TooLarge);
  EXPECT_FALSE(loan);
  EXPECT_EQ(pub.loan(1024, loan), PublishStatus::Ok);
  EXPECT_GE(loan.capacity(), 1024u);
}
