// The casts' specification, by arithmetic on values rather than on bits: a finite x is
// rounded to the nearest multiple of its ulp in the target type (ties to even, from
// nearbyint under the default rounding mode), then encoded.
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>

#include "kernels/convert/convert.h"

namespace colossal::kernels {
namespace {

struct Format {
  int mantissa_bits;  // stored, without the hidden bit
  int min_exponent;   // of the smallest normal
  double max_finite;
};
constexpr Format kBf16{7, -126, 3.3895313892515355e38};  // (2 - 2^-7) · 2^127
constexpr Format kF16{10, -14, 65504.0};

const Format& FormatOf(DType dtype) { return dtype == DType::kBF16 ? kBf16 : kF16; }

// x rounded to the format, as a double (±inf on overflow).
double Round(double x, const Format& f) {
  if (x == 0.0 || std::isinf(x)) return x;
  int e = std::ilogb(x);
  if (e < f.min_exponent) e = f.min_exponent;  // subnormals share the smallest exponent's ulp
  const double ulp = std::ldexp(1.0, e - f.mantissa_bits);
  const double r = std::nearbyint(x / ulp) * ulp;
  // Past the largest finite value by half an ulp or more: infinity (IEEE overflow).
  const double top_ulp = std::ldexp(1.0, std::ilogb(f.max_finite) - f.mantissa_bits);
  if (std::fabs(x) >= f.max_finite + top_ulp / 2) return std::copysign(INFINITY, x);
  return r;
}

uint16_t EncodeF16(double v) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  if (std::isinf(a)) return sign | 0x7c00;
  if (a < std::ldexp(1.0, -14)) return sign | static_cast<uint16_t>(a / std::ldexp(1.0, -24));  // subnormal
  const int e = std::ilogb(a);
  const uint16_t mant = static_cast<uint16_t>((a / std::ldexp(1.0, e) - 1.0) * 1024.0);
  return sign | static_cast<uint16_t>((e + 15) << 10) | mant;
}

uint16_t Encode(double v, DType dtype) {
  // A bf16 value is an fp32 whose low 16 bits are zero.
  if (dtype == DType::kBF16) return static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);
  return EncodeF16(v);
}

}  // namespace

void CastTo16Ref(DType dtype, const float* x, uint16_t* y, int64_t n) {
  COL_CHECK(dtype == DType::kBF16 || dtype == DType::kF16);
  COL_CHECK(std::fegetround() == FE_TONEAREST);
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      y[i] = dtype == DType::kBF16 ? static_cast<uint16_t>((std::bit_cast<uint32_t>(x[i]) >> 16) | 0x40)
                                   : static_cast<uint16_t>((std::signbit(x[i]) ? 0x8000 : 0) | 0x7e00);
      continue;
    }
    y[i] = Encode(Round(x[i], FormatOf(dtype)), dtype);
  }
}

void Cast16ToF32Ref(DType dtype, const uint16_t* x, float* y, int64_t n) {
  COL_CHECK(dtype == DType::kBF16 || dtype == DType::kF16);
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kBF16) {
      y[i] = std::bit_cast<float>(static_cast<uint32_t>(x[i]) << 16);
      continue;
    }
    const int exp = (x[i] >> 10) & 0x1f, mant = x[i] & 0x3ff;
    const double s = (x[i] & 0x8000) ? -1.0 : 1.0;
    if (exp == 0x1f) {
      y[i] = mant == 0 ? static_cast<float>(s * INFINITY) : std::nanf("");
    } else if (exp == 0) {
      y[i] = static_cast<float>(s * mant * std::ldexp(1.0, -24));
    } else {
      y[i] = static_cast<float>(s * (1.0 + mant / 1024.0) * std::ldexp(1.0, exp - 15));
    }
  }
}

namespace {
template <DType D>
void To16(const float* x, uint16_t* y, int64_t n, Stream) {
  CastTo16Ref(D, x, y, n);
}
template <DType D>
void From16(const uint16_t* x, float* y, int64_t n, Stream) {
  Cast16ToF32Ref(D, x, y, n);
}
const Registrar<CastTo16Fn> kToBf16(CastTo16Table(), Backend::kRef, DType::kBF16, &To16<DType::kBF16>);
const Registrar<CastTo16Fn> kToF16(CastTo16Table(), Backend::kRef, DType::kF16, &To16<DType::kF16>);
const Registrar<Cast16ToF32Fn> kFromBf16(Cast16ToF32Table(), Backend::kRef, DType::kBF16, &From16<DType::kBF16>);
const Registrar<Cast16ToF32Fn> kFromF16(Cast16ToF32Table(), Backend::kRef, DType::kF16, &From16<DType::kF16>);
}  // namespace

Dispatch<CastTo16Fn>& CastTo16Table() {
  static Dispatch<CastTo16Fn> table("cast_to_16");
  return table;
}
Dispatch<Cast16ToF32Fn>& Cast16ToF32Table() {
  static Dispatch<Cast16ToF32Fn> table("cast_16_to_f32");
  return table;
}

}  // namespace colossal::kernels
