// Pump: sockets on Boost.Asio, one thread, bytes only (see pump.hpp).
#include "pump.hpp"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "flowbus/error.hpp"

namespace flowbus::sidecar {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxGather = 64;

std::pair<std::string, std::string> split_address(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    throw Error(ErrorCode::InvalidArgument, "address '" + address + "' is not HOST:PORT (e.g. 127.0.0.1:7400)");
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  // A number from 0 to 65535 (a service name would be looked up: refuse it too, it is never meant).
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    throw Error(ErrorCode::InvalidArgument, "address '" + address + "': the port must be a number from 0 to 65535");
  return {host, port};
}

std::string tls_reason(const boost::system::error_code& ec) {
  std::string text = ec.message();
  if (ec.category() == asio::error::get_ssl_category())
    text += " (both sides need --tls-cert, --tls-key and a --tls-ca that signed the other's certificate)";
  return text;
}

/// Memory for one outstanding asynchronous operation of a connection (its
/// read, or its write): Asio allocates each operation through the handler's
/// allocator, so reusing this block keeps the steady path off the heap.
/// Asio frees an operation's memory before it calls the handler, so one block
/// per direction is enough; anything larger or overlapping falls back to new.
class HandlerMemory {
 public:
  void* allocate(size_t size) {
    if (!in_use_ && size <= sizeof storage_) {
      in_use_ = true;
      return storage_;
    }
    return ::operator new(size);
  }
  void deallocate(void* p) {
    if (p == storage_) in_use_ = false;
    else ::operator delete(p);
  }

 private:
  alignas(std::max_align_t) unsigned char storage_[1024];
  bool in_use_ = false;
};

template <class T>
struct HandlerAllocator {
  using value_type = T;
  HandlerMemory* memory;
  explicit HandlerAllocator(HandlerMemory& m) : memory(&m) {}
  template <class U>
  HandlerAllocator(const HandlerAllocator<U>& other) noexcept : memory(other.memory) {}
  T* allocate(size_t n) { return static_cast<T*>(memory->allocate(sizeof(T) * n)); }
  void deallocate(T* p, size_t) { memory->deallocate(p); }
  template <class U>
  bool operator==(const HandlerAllocator<U>& o) const noexcept { return memory == o.memory; }
  template <class U>
  bool operator!=(const HandlerAllocator<U>& o) const noexcept { return memory != o.memory; }
};

/// A completion handler that tells Asio to allocate from `memory`.
template <class Handler>
struct WithMemory {
  using allocator_type = HandlerAllocator<Handler>;
  HandlerMemory& memory;
  Handler handler;
  allocator_type get_allocator() const noexcept { return allocator_type(memory); }
  template <class... Args>
  void operator()(Args&&... args) { handler(std::forward<Args>(args)...); }
};
template <class Handler>
WithMemory<std::decay_t<Handler>> with_memory(HandlerMemory& m, Handler&& h) {
  return {m, std::forward<Handler>(h)};
}

/// The chunks of one gather write, by reference: async_write keeps its
/// buffer sequence by value, and a std::vector there would be copied (and
/// allocated) on every write.
struct GatherView {
  using value_type = asio::const_buffer;
  using const_iterator = const asio::const_buffer*;
  const asio::const_buffer* first;
  const asio::const_buffer* last;
  const_iterator begin() const noexcept { return first; }
  const_iterator end() const noexcept { return last; }
};

}  // namespace

struct Pump::Impl {
  struct Connection;
  struct OutItem {
    std::shared_ptr<LinkState> link;
    Chunk* chunk = nullptr;  // nullptr: close after what is queued
  };

  Pump& pump;
  const SidecarOptions& options;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  ssl::context client_tls{ssl::context::tls};
  ssl::context server_tls{ssl::context::tls};
  bool use_tls = false;
  std::optional<tcp::acceptor> acceptor;
  std::map<uint32_t, std::shared_ptr<Connection>> connections;
  moodycamel::ConcurrentQueue<OutItem> outbox;
  std::atomic<bool> drain_posted{false};
  uint32_t next_id = 1;
  std::thread thread;

  Impl(Pump& p, const SidecarOptions& o) : pump(p), options(o) {}

  struct Connection : std::enable_shared_from_this<Connection> {
    Impl& impl;
    std::shared_ptr<LinkState> link;
    ssl::stream<tcp::socket> stream;
    bool tls;
    std::vector<Chunk*> pending;  // waiting for the socket, in order
    std::vector<Chunk*> writing;
    std::vector<asio::const_buffer> gather;
    bool close_after_writes = false;
    bool closed = false;
    asio::steady_timer pause;
    asio::steady_timer handshake_deadline;
    size_t dial_index = SIZE_MAX;  // outbound: which --peer, to redial
    HandlerMemory read_memory, write_memory;
    uint8_t first_byte[1] = {};

    Connection(Impl& i, tcp::socket s, bool use_tls, ssl::context& ctx)
        : impl(i), stream(std::move(s), ctx), tls(use_tls), pause(i.io), handshake_deadline(i.io) {
      pending.reserve(256);
      writing.reserve(kMaxGather);
      gather.reserve(kMaxGather);
    }

    template <class Buffers, class Handler>
    void read_some(const Buffers& b, Handler&& h) {
      if (tls) stream.async_read_some(b, std::forward<Handler>(h));
      else stream.next_layer().async_read_some(b, std::forward<Handler>(h));
    }
    template <class Buffers, class Handler>
    void write_all(const Buffers& b, Handler&& h) {
      if (tls) asio::async_write(stream, b, std::forward<Handler>(h));
      else asio::async_write(stream.next_layer(), b, std::forward<Handler>(h));
    }

    void begin(ssl::stream_base::handshake_type role) {
      auto self = shared_from_this();
      // TLS and Hello/Auth together get handshake_timeout: a peer that
      // trickles its handshake holds a pending slot no longer than that.
      handshake_deadline.expires_after(impl.options.handshake_timeout);
      handshake_deadline.async_wait([self](const boost::system::error_code& ec) {
        if (ec || self->closed || self->link->authenticated.load(std::memory_order_relaxed)) return;
        self->fail("no handshake within " + std::to_string(self->impl.options.handshake_timeout.count()) +
                   " ms (--handshake-timeout-ms); closed");
      });
      if (!tls) return connected();
      if (role == ssl::stream_base::server) return check_speaks_tls();
      handshake(role);
    }

    /// A TLS listener looks at the first byte before its handshake: a plain
    /// peer's Hello would only make OpenSSL fail obscurely (or the peer give
    /// up first, and all we would log is that it closed the connection).
    void check_speaks_tls() {
      auto self = shared_from_this();
      stream.next_layer().async_receive(asio::buffer(first_byte), tcp::socket::message_peek,
                                        [self](const boost::system::error_code& ec, size_t) {
        if (self->closed) return;
        if (ec) return self->fail(ec == asio::error::eof ? "the peer closed the connection before its TLS handshake" : ec.message());
        if (self->first_byte[0] != 0x16)  // a TLS handshake record
          return self->fail("it spoke plain TCP to this TLS listener: configure --tls-cert, --tls-key and --tls-ca on both sides");
        self->handshake(ssl::stream_base::server);
      });
    }

    void handshake(ssl::stream_base::handshake_type role) {
      auto self = shared_from_this();
      stream.async_handshake(role, [self](const boost::system::error_code& ec) {
        if (ec) return self->fail("TLS handshake failed: " + tls_reason(ec));
        self->connected();
      });
    }

    void connected() {
      impl.pump.events_.enqueue(NetEvent{NetEvent::Kind::Connected, link, nullptr, {}});
      read_next();
    }

    void read_next() {
      if (closed) return;
      // Flow control: the shared-memory thread has not caught up; look again
      // soon. Before authentication, one chunk at a time: a peer we do not
      // know yet gets no more of our memory than that.
      const bool known = link->authenticated.load(std::memory_order_relaxed);
      if (link->unprocessed_in.load(std::memory_order_relaxed) > (known ? impl.options.window : 0)) {
        auto self = shared_from_this();
        pause.expires_after(std::chrono::milliseconds(1));
        pause.async_wait([self](const boost::system::error_code&) { self->read_next(); });
        return;
      }
      Chunk* c = impl.pump.take(impl.pump.free_network_chunks_, kReadChunk, true);
      auto self = shared_from_this();
      read_some(asio::buffer(c->bytes.data(), kReadChunk), with_memory(read_memory, [self, c](const boost::system::error_code& ec, size_t n) {
        if (ec || self->closed) {
          self->impl.pump.recycle(c);
          if (!self->closed)
            self->fail(ec == asio::error::eof || ec == ssl::error::stream_truncated ? "the peer closed the connection"
                                                                                    : ec.message());
          return;
        }
        c->size = n;
        self->link->unprocessed_in.fetch_add(c->footprint(), std::memory_order_relaxed);
        self->impl.pump.events_.enqueue(NetEvent{NetEvent::Kind::Bytes, self->link, c, {}});
        self->read_next();
      }));
    }

    void queue(Chunk* c) {
      if (closed) {
        link->queued_out.fetch_sub(c->footprint(), std::memory_order_relaxed);
        impl.pump.recycle(c);
        return;
      }
      pending.push_back(c);
      if (writing.empty()) write_next();
    }

    void write_next() {
      if (closed || !writing.empty()) return;
      if (pending.empty()) {
        if (close_after_writes) fail("closed by this side");
        return;
      }
      const size_t n = std::min(pending.size(), kMaxGather);
      writing.assign(pending.begin(), pending.begin() + long(n));
      pending.erase(pending.begin(), pending.begin() + long(n));
      gather.clear();
      for (Chunk* c : writing) gather.emplace_back(c->bytes.data(), c->size);
      auto self = shared_from_this();
      write_all(GatherView{gather.data(), gather.data() + gather.size()}, with_memory(write_memory, [self](const boost::system::error_code& ec, size_t) {
        for (Chunk* c : self->writing) {
          self->link->queued_out.fetch_sub(c->footprint(), std::memory_order_relaxed);
          self->impl.pump.recycle(c);
        }
        self->writing.clear();
        if (ec) return self->fail(ec.message());
        self->write_next();
      }));
    }

    void fail(const std::string& reason) {
      if (closed) return;
      closed = true;
      boost::system::error_code ignored;
      pause.cancel();
      handshake_deadline.cancel();
      stream.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
      stream.next_layer().close(ignored);
      for (Chunk* c : pending) {
        link->queued_out.fetch_sub(c->footprint(), std::memory_order_relaxed);
        impl.pump.recycle(c);
      }
      pending.clear();
      impl.pump.events_.enqueue(NetEvent{NetEvent::Kind::Closed, link, nullptr, reason});
      impl.connections.erase(link->id);
      if (dial_index != SIZE_MAX) impl.redial_after_close(dial_index, link);
    }
  };

  void configure_tls() {
    const bool any = !options.tls_cert.empty() || !options.tls_key.empty() || !options.tls_ca.empty();
    if (!any) return;
    if (options.tls_cert.empty() || options.tls_key.empty() || options.tls_ca.empty())
      throw Error(ErrorCode::InvalidArgument, "TLS needs all of --tls-cert, --tls-key and --tls-ca");
    for (ssl::context* ctx : {&client_tls, &server_tls}) {
      boost::system::error_code ec;
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      const auto check = [&](const std::string& what, const std::string& file) {
        if (ec) throw Error(ErrorCode::InvalidArgument, "cannot use " + what + " '" + file + "': " + ec.message());
      };
      ctx->use_certificate_chain_file(options.tls_cert, ec);
      check("--tls-cert", options.tls_cert);
      ctx->use_private_key_file(options.tls_key, ssl::context::pem, ec);
      check("--tls-key", options.tls_key);
      ctx->load_verify_file(options.tls_ca, ec);
      check("--tls-ca", options.tls_ca);
      // Mutual authentication: each side proves a certificate signed by the CA.
      ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    use_tls = true;
  }

  void listen() {
    if (options.listen.empty()) return;
    const auto [host, port] = split_address(options.listen);
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    const auto results = resolver.resolve(host, port, tcp::resolver::passive, ec);
    if (ec || results.empty())
      throw Error(ErrorCode::InvalidArgument, "cannot resolve --listen " + options.listen + ": " + ec.message());
    const tcp::endpoint at = results.begin()->endpoint();
    acceptor.emplace(io);
    acceptor->open(at.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(at, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw Error(ErrorCode::System, "cannot listen on " + options.listen + ": " + ec.message() +
                                         (ec == asio::error::address_in_use ? "; another process has it, choose another port" : ""));
    pump.listen_port_.store(acceptor->local_endpoint().port(), std::memory_order_release);
    accept_next();
  }

  void accept_next() {
    acceptor->async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        auto link = std::make_shared<LinkState>();
        link->id = next_id++;
        boost::system::error_code ignored;
        const auto remote = socket.remote_endpoint(ignored);
        link->address = remote.address().to_string() + ":" + std::to_string(remote.port());
        if (pending_handshakes() >= options.max_pending) {
          socket.close(ignored);
          pump.events_.enqueue(NetEvent{NetEvent::Kind::Closed, link, nullptr,
                                        "refused: " + std::to_string(options.max_pending) +
                                            " connections are in their handshake already (--max-pending)"});
        } else {
          auto c = std::make_shared<Connection>(*this, std::move(socket), use_tls, server_tls);
          c->link = link;
          connections[link->id] = c;
          c->begin(ssl::stream_base::server);
        }
      }
      accept_next();
    });
  }

  /// Incoming connections not authenticated yet (TLS or Hello/Auth under way).
  size_t pending_handshakes() const {
    size_t n = 0;
    for (const auto& [id, c] : connections)
      if (c->dial_index == SIZE_MAX && !c->link->authenticated.load(std::memory_order_relaxed)) ++n;
    return n;
  }

  /// After an outbound connection closed. The shared-memory thread may learn
  /// only after the close that the peer refused us for good (its Refuse and
  /// its close arrive together), so the decision waits for the usual delay.
  void redial_after_close(size_t index, std::shared_ptr<LinkState> link) {
    if (!work) return;  // stopping
    auto timer = std::make_shared<asio::steady_timer>(io, options.reconnect);
    timer->async_wait([this, timer, index, link](const boost::system::error_code& ec) {
      if (ec) return;
      const std::chrono::milliseconds hopeless(link->redial_after_ms.load(std::memory_order_relaxed));
      if (hopeless > options.reconnect) return redial(index, hopeless - options.reconnect);
      dial(index, std::min(options.reconnect * 2, std::chrono::milliseconds(8000)));
    });
  }

  void redial(size_t index, std::chrono::milliseconds delay) {
    if (!work) return;  // stopping
    auto timer = std::make_shared<asio::steady_timer>(io, delay);
    timer->async_wait([this, timer, index, delay](const boost::system::error_code& ec) {
      if (!ec) dial(index, std::min(delay * 2, std::chrono::milliseconds(8000)));
    });
  }

  void dial(size_t index, std::chrono::milliseconds next_delay) {
    if (!work) return;
    const std::string address = options.peers[index];
    const auto [host, port] = split_address(address);
    auto resolver = std::make_shared<tcp::resolver>(io);
    resolver->async_resolve(host, port, [this, resolver, index, address, next_delay](const boost::system::error_code& ec,
                                                                                     tcp::resolver::results_type results) {
      if (ec) {
        if (options.log) options.log("peer " + address + ": cannot resolve: " + ec.message() + "; retrying");
        return redial(index, next_delay);
      }
      auto socket = std::make_shared<tcp::socket>(io);
      asio::async_connect(*socket, results, [this, socket, index, address, next_delay](const boost::system::error_code& ec2,
                                                                                        const tcp::endpoint&) {
        if (ec2) return redial(index, next_delay);  // not up yet: quietly retry
        socket->set_option(tcp::no_delay(true));
        auto link = std::make_shared<LinkState>();
        link->id = next_id++;
        link->address = address;
        link->outbound = true;
        auto c = std::make_shared<Connection>(*this, std::move(*socket), use_tls, client_tls);
        c->link = link;
        c->dial_index = index;
        connections[link->id] = c;
        c->begin(ssl::stream_base::client);
      });
    });
  }

  void drain() {
    drain_posted.store(false, std::memory_order_release);  // before dequeuing: a later send posts again
    OutItem item;
    while (outbox.try_dequeue(item)) {
      auto it = connections.find(item.link->id);
      if (it == connections.end()) {
        if (item.chunk) {
          item.link->queued_out.fetch_sub(item.chunk->footprint(), std::memory_order_relaxed);
          pump.recycle(item.chunk);
        }
        continue;
      }
      if (item.chunk) {
        it->second->queue(item.chunk);
      } else {
        it->second->close_after_writes = true;
        if (it->second->writing.empty()) it->second->write_next();
      }
    }
  }

  // The shared-memory thread wakes us through an eventfd rather than
  // asio::post: a post from outside the io thread allocates its operation
  // every time, an 8-byte write does not.
  int wake_fd = -1;
  std::optional<asio::posix::stream_descriptor> wake;
  uint64_t wake_value = 0;
  HandlerMemory wake_memory;

  void arm_wake() {
    wake->async_read_some(asio::buffer(&wake_value, sizeof wake_value),
                          with_memory(wake_memory, [this](const boost::system::error_code& ec, size_t) {
                            if (ec) return;  // closed: stopping
                            drain();
                            arm_wake();
                          }));
  }

  void post_drain() {
    // acq_rel: whoever flips it to true wakes us; drain() resets it before it looks.
    if (!drain_posted.exchange(true, std::memory_order_acq_rel)) {
      const uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof one);  // cannot fail short: an eventfd counter
    }
  }
};

Pump::Pump(const SidecarOptions& options) : impl_(std::make_unique<Impl>(*this, options)) {}

Pump::~Pump() {
  stop();
  Chunk* c;  // the network thread is joined: its pool is ours now
  while (free_shm_chunks_.try_dequeue(c)) delete c;
  while (free_network_chunks_.try_dequeue(c)) delete c;
  NetEvent e;
  while (events_.try_dequeue(e)) delete e.chunk;
}

void Pump::start() {
  impl_->configure_tls();
  impl_->work.emplace(impl_->io.get_executor());
  impl_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl_->wake_fd < 0) throw Error(ErrorCode::System, std::string("eventfd: ") + std::strerror(errno));
  impl_->wake.emplace(impl_->io, impl_->wake_fd);  // owns the fd from here
  impl_->arm_wake();
  impl_->listen();
  for (size_t i = 0; i < impl_->options.peers.size(); ++i) {
    (void)std::get<1>(split_address(impl_->options.peers[i]));  // refuse a malformed --peer now
    impl_->dial(i, impl_->options.reconnect);
  }
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

void Pump::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    impl_->work.reset();
    if (impl_->acceptor) impl_->acceptor->close();
    auto all = impl_->connections;
    for (auto& [id, c] : all) c->fail("the sidecar is stopping");
    boost::system::error_code ignored;
    impl_->wake->close(ignored);
    impl_->io.stop();
  });
  impl_->thread.join();
}

Chunk* Pump::chunk(size_t size) { return take(free_shm_chunks_, size, false); }

Chunk* Pump::take(moodycamel::ConcurrentQueue<Chunk*>& pool, size_t size, bool network_owned) {
  Chunk* c = nullptr;
  if (!pool.try_dequeue(c)) {
    c = new Chunk;
    c->network_owned = network_owned;
  }
  if (c->bytes.size() < size) c->bytes.resize(std::max(size, kReadChunk));
  c->size = 0;
  return c;
}

void Pump::recycle(Chunk* c) {
  if (c) (c->network_owned ? free_network_chunks_ : free_shm_chunks_).enqueue(c);
}

void Pump::send(const std::shared_ptr<LinkState>& link, Chunk* c) {
  link->queued_out.fetch_add(c->footprint(), std::memory_order_relaxed);
  impl_->outbox.enqueue(Impl::OutItem{link, c});
  impl_->post_drain();
}

void Pump::consumed(const std::shared_ptr<LinkState>& link, const Chunk* c) {
  link->unprocessed_in.fetch_sub(c->footprint(), std::memory_order_relaxed);
}

void Pump::close(const std::shared_ptr<LinkState>& link) {
  impl_->outbox.enqueue(Impl::OutItem{link, nullptr});
  impl_->post_drain();
}

}  // namespace flowbus::sidecar
