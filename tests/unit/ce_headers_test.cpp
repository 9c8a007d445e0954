// The CloudEvents <-> NATS header mapping of the bridge (binary mode), on its own.
#include "bridge/ce_headers.hpp"

#include <gtest/gtest.h>

#include <map>

#include "flowbus/event.hpp"

using namespace flowbus;
using namespace flowbus::bridge;

namespace {

CeAttributes sample() {
  CeAttributes ce;
  ce.id = "00ab00cd00ef0012-42";
  ce.source = "flowbus://host/plant/line1";
  ce.type = "examples.SensorReading";
  ce.time = "2026-12-06T15:36:46.123456789Z";
  ce.subject = "line1";
  ce.dataschema = "flowbus:schema/fnv1a64:c562c241dbf8a4e1";
  ce.flowbustopic = "sensor.temp";
  ce.flowbusseq = "42";
  ce.flowbusorigin = "node-a";
  return ce;
}

}  // namespace

TEST(CeHeadersTest, EveryAttributeGoesToItsCePrefixedHeaderAndComesBackIdentical) {
  const CeAttributes ce = sample();
  std::map<std::string, std::string> headers;
  for (const auto& [k, v] : to_headers(ce)) headers[k] = v;
  EXPECT_EQ(headers.at("ce-specversion"), "1.0");
  EXPECT_EQ(headers.at("ce-id"), ce.id);
  EXPECT_EQ(headers.at("ce-source"), ce.source);
  EXPECT_EQ(headers.at("ce-type"), ce.type);
  EXPECT_EQ(headers.at("ce-time"), ce.time);
  EXPECT_EQ(headers.at("ce-subject"), ce.subject);
  EXPECT_EQ(headers.at("ce-dataschema"), ce.dataschema);
  EXPECT_EQ(headers.at("ce-flowbustopic"), "sensor.temp");
  EXPECT_EQ(headers.at("ce-flowbusseq"), "42");
  EXPECT_EQ(headers.at("ce-flowbusorigin"), "node-a");
  EXPECT_EQ(headers.at("content-type"), "application/x-flatbuffers");
  EXPECT_EQ(headers.count("ce-datacontenttype"), 0u) << "the binding maps datacontenttype to content-type";
  const CeAttributes back = from_headers([&](std::string_view k) -> std::optional<std::string> {
    auto it = headers.find(std::string(k));
    return it == headers.end() ? std::nullopt : std::optional<std::string>(it->second);
  });
  EXPECT_EQ(back.id, ce.id);
  EXPECT_EQ(back.source, ce.source);
  EXPECT_EQ(back.type, ce.type);
  EXPECT_EQ(back.time, ce.time);
  EXPECT_EQ(back.subject, ce.subject);
  EXPECT_EQ(back.dataschema, ce.dataschema);
  EXPECT_EQ(back.datacontenttype, ce.datacontenttype);
  EXPECT_EQ(back.flowbusorigin, ce.flowbusorigin);
}

TEST(CeHeadersTest, AnEmptySubjectIsLeftOut) {
  CeAttributes ce = sample();
  ce.subject.clear();
  for (const auto& [k, v] : to_headers(ce)) EXPECT_NE(k, "ce-subject");
}

TEST(CeHeadersTest, AMessageWithoutTheRequiredAttributesIsNotACloudEventAndSaysWhichIsMissing) {
  std::map<std::string, std::string> h = {{"ce-specversion", "1.0"}, {"ce-id", "x"}, {"ce-source", "urn:a"}};
  const auto get = [&](std::string_view k) -> std::optional<std::string> {
    auto it = h.find(std::string(k));
    return it == h.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  try {
    (void)from_headers(get);
    FAIL() << "no ce-type";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("header 'ce-type' is missing"), std::string::npos) << e.what();
  }
  h["ce-type"] = "t";
  h["ce-specversion"] = "0.3";
  EXPECT_THROW((void)from_headers(get), std::invalid_argument);
}

TEST(CeHeadersTest, FlowbusIdsParseAndOthersDoNot) {
  EXPECT_EQ(parse_flowbus_id("00ab00cd00ef0012-42"), std::make_pair(uint64_t(0x00ab00cd00ef0012), uint64_t(42)));
  EXPECT_EQ(parse_flowbus_id("ffffffffffffffff-18446744073709551615"), std::make_pair(~uint64_t(0), ~uint64_t(0)));
  EXPECT_FALSE(parse_flowbus_id("ffffffffffffffff-18446744073709551616"));  // overflow
  EXPECT_FALSE(parse_flowbus_id("order-1"));
  EXPECT_FALSE(parse_flowbus_id("00AB00CD00EF0012-42"));  // flowbus writes lower case
  EXPECT_FALSE(parse_flowbus_id("00ab00cd00ef0012-"));
  EXPECT_FALSE(parse_flowbus_id("00ab00cd00ef0012-4x"));
}

TEST(CeHeadersTest, Rfc3339TimesRoundTripWithNanosecondsAndOffsets) {
  const uint64_t ns = 1796571406123456789ull;
  EXPECT_EQ(parse_rfc3339_ns(format_rfc3339(ns)), ns);
  EXPECT_EQ(parse_rfc3339_ns("1970-01-01T00:00:00Z"), 0u);
  EXPECT_EQ(parse_rfc3339_ns("1970-01-01T01:00:00.5+01:00"), 500000000u);
  EXPECT_EQ(parse_rfc3339_ns("1970-01-01T00:00:01-00:00"), 1000000000u);
  EXPECT_FALSE(parse_rfc3339_ns("yesterday"));
  EXPECT_FALSE(parse_rfc3339_ns("2026-12-06T15:36:46"));  // no offset
  EXPECT_FALSE(parse_rfc3339_ns("2026-13-06T15:36:46Z"));
  EXPECT_FALSE(parse_rfc3339_ns("2026-12-06T15:36:46.Z"));
}

TEST(CeHeadersTest, TopicsAndSubjectsMapBothWaysAndTheSchemaSubjectIsNoTopic) {
  EXPECT_EQ(subject_of("flowbus", "sensor.temp.line1"), "flowbus.sensor.temp.line1");
  EXPECT_EQ(topic_of("flowbus", "flowbus.sensor.temp.line1"), "sensor.temp.line1");
  EXPECT_FALSE(topic_of("flowbus", "other.sensor"));
  EXPECT_FALSE(topic_of("flowbus", "flowbusx.sensor"));
  EXPECT_FALSE(topic_of("flowbus", "flowbus"));
  EXPECT_EQ(schema_subject("flowbus", "fnv1a64:c562c241dbf8a4e1"), "flowbus._flowbus.schema.c562c241dbf8a4e1");
  EXPECT_FALSE(topic_of("flowbus", schema_subject("flowbus", "fnv1a64:c562c241dbf8a4e1")));
  EXPECT_EQ(flowbus_schema_id("flowbus:schema/fnv1a64:c562c241dbf8a4e1"), "fnv1a64:c562c241dbf8a4e1");
  EXPECT_FALSE(flowbus_schema_id("https://example.com/schema.json"));
  EXPECT_FALSE(flowbus_schema_id("flowbus:schema/fnv1a64:xyz"));
}
