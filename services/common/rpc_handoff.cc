/*
 * rpc_handoff.cc - hands a connection Lumen accepted (listener.h) to a gRPC
 * server. The one C++ file: gRPC's C API can adopt a connected descriptor
 * only without TLS (grpc_server_add_channel_from_fd), while a port named
 * "external:<name>" gets a handler for connections accepted elsewhere,
 * which go through the server's own handshakers (TLS included), handshake
 * timeout and resource quota like those it accepts itself. gRPC writes the
 * handler, a grpc_core::TcpServerFdHandler, into the pointer the server's
 * channel argument of that name gives (rpc_server.c); the interface below is
 * the one its src/core/lib/iomgr/tcp_server.h declares (unchanged from gRPC
 * 1.24 to 1.6x; the same mechanism backs grpc++'s
 * ExternalConnectionAcceptor).
 */
#include <grpc/byte_buffer.h>

namespace grpc_core {
class TcpServerFdHandler {
 public:
  virtual ~TcpServerFdHandler() = default;
  virtual void Handle(int listener_fd, int fd, grpc_byte_buffer* pending_read) = 0;
};
}  // namespace grpc_core

extern "C" void lm_rpc_handoff(void* handler, int listener_fd, int fd) {
  static_cast<grpc_core::TcpServerFdHandler*>(handler)->Handle(listener_fd, fd, nullptr);
}
