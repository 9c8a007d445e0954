// The whole public C++ API of flowbus in one include: <flowbus/flowbus.hpp>.
#pragma once

#include "flowbus/bus.hpp"
#include "flowbus/error.hpp"
#include "flowbus/event.hpp"
#include "flowbus/gc.hpp"
#include "flowbus/inspect.hpp"
#include "flowbus/names.hpp"
#include "flowbus/publisher.hpp"
#include "flowbus/schema.hpp"
#include "flowbus/subscriber.hpp"
#include "flowbus/topic.hpp"
#include "flowbus/version.hpp"
