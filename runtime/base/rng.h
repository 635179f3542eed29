// The project's own seeded random numbers (data order, parameter initialisation,
// sampling): splitmix64 (seed expansion), xoshiro256** (the generator), Lemire's
// unbiased bounded draw, Fisher–Yates, uniform and normal doubles, and name hashing.
// Everything is specified here bit for bit, so an order depends only on the seed and
// never on the standard library's distributions or the platform. Not cryptographic.
// Value types; not shared between threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <span>
#include <utility>

namespace colossal::base {

// splitmix64 (Steele, Lea, Flood; Vigna's reference code): advances `state` by the
// golden-ratio increment and returns the mixed value.
inline uint64_t SplitMix64Next(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256** 1.0 (Blackman, Vigna).
class Xoshiro256StarStar {
 public:
  // State = four successive splitmix64 outputs from `seed` (as the authors recommend).
  explicit Xoshiro256StarStar(uint64_t seed) {
    for (uint64_t& word : s_) word = SplitMix64Next(seed);
  }
  // Raw state, for reference-vector tests. Must not be all zero.
  Xoshiro256StarStar(uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3) : s_{s0, s1, s2, s3} {}

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n), n > 0, without bias (Lemire 2019, "Fast random integer
  // generation in an interval": multiply-shift with rejection of the short zone).
  uint64_t Below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(Next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(Next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

  // Uniform in [0, 1) from the top 53 bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // Standard normal by Box–Muller; the second value of each pair is kept for the next
  // call.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

// Shuffles `items` in place (Durstenfeld's Fisher–Yates: for i = n-1 down to 1, swap
// items[i] with items[Below(i + 1)]).
template <typename T>
void FisherYatesShuffle(std::span<T> items, Xoshiro256StarStar& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng.Below(i));
    using std::swap;
    swap(items[i - 1], items[j]);
  }
}

// A stable 64-bit hash of a name (FNV-1a), for per-tensor streams: StreamSeed(seed,
// HashName(name)).
inline uint64_t HashName(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return h;
}

// The generator seed for one (seed, stream) pair, e.g. (job seed, epoch): splitmix64
// of splitmix64(seed) + stream, so nearby seeds and streams give unrelated generators.
inline uint64_t StreamSeed(uint64_t seed, uint64_t stream) {
  uint64_t state = seed;
  uint64_t mixed = SplitMix64Next(state) + stream;
  return SplitMix64Next(mixed);
}

}  // namespace colossal::base
