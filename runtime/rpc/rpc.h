// gRPC plumbing shared by the coordinator, the node daemon, workers and the CLI:
// absl::Status <-> grpc::Status (codes map one to one), server and channel
// credentials (loopback-insecure by default; TLS required to listen beyond loopback
// unless `insecure` is set explicitly), bearer-token authentication, and deadlines.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossal::rpc {

grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

// Security settings of one endpoint (a server, or a client of one).
struct SecurityOptions {
  std::string token_file;  // bearer token: required by servers, sent by clients
  std::string tls_cert;    // PEM certificate (server: its own; client: for mTLS)
  std::string tls_key;     // PEM private key of tls_cert
  std::string tls_ca;      // PEM roots: a client verifies the server with it; a server
                           // with it requires and verifies client certificates (mTLS)
  bool insecure = false;   // allow plaintext beyond loopback (explicit opt-in)

  bool tls() const { return !tls_cert.empty() || !tls_ca.empty(); }
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);
// Splits "host:port" ("[::1]:port" for IPv6); InvalidArgument naming `address` otherwise.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address);

// Reads a token file (whitespace trimmed); errors name the file. Empty path: "".
absl::StatusOr<std::string> ReadToken(const std::string& path);

// Credentials to listen on `address`: TLS when configured; plaintext on loopback;
// plaintext elsewhere only with `insecure` (FailedPrecondition otherwise, saying how to
// fix it). A non-loopback listener also requires a token file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& address, const SecurityOptions& options);

// A channel to `target` with TLS when configured (plaintext otherwise); it reconnects
// at most a second after its peer comes back.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const SecurityOptions& options);

// Server side: checks "authorization: Bearer <token>" (constant time) when `token` is
// non-empty. UNAUTHENTICATED names what is missing or wrong, never the expected token.
class TokenAuth {
 public:
  explicit TokenAuth(std::string token) : token_(std::move(token)) {}
  grpc::Status Check(const grpc::ServerContext* context) const;
  bool enabled() const { return !token_.empty(); }

 private:
  std::string token_;
};

// `bytes` as valid UTF-8 (each invalid sequence replaced by U+FFFD), for proto string
// fields that carry text from outside, such as worker log tails.
std::string ValidUtf8(std::string_view bytes);

// Client side: a context with a deadline `timeout` from now and the token (if any).
std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds timeout,
                                                const std::string& token);

}  // namespace colossal::rpc
