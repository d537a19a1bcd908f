// The CP-decomposed convolution (1x1 projection to R channels, kh x 1 and 1 x kw depthwise
// filters, 1x1 projection to N channels), independent of any framework: its geometry and the
// input rows and columns a block of output rows reads, shared by every backend.
#pragma once

#include "../common/std.h"

#include "../common/hd.h"

namespace emokernels::cp {

struct CpGeometry {
  int64_t b, c, h, w;  // input [B, C, H, W]
  int64_t r, n;        // rank, output channels
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t ho, wo;      // output size

  // Output rows [oh0, oh1) read input rows [first_row(oh0), end_row(oh1)), clipped to the
  // image: rows of the zero padding contribute nothing and are never formed.
  EMOKERNELS_HD int64_t first_row(int64_t oh0) const {
    const int64_t ih = oh0 * sh - ph;
    return ih < 0 ? 0 : ih;
  }
  EMOKERNELS_HD int64_t end_row(int64_t oh1) const {
    const int64_t ih = (oh1 - 1) * sh - ph + kh;
    return ih > h ? h : ih;
  }
  // Input rows a block of `rows` output rows reads at most.
  EMOKERNELS_HD int64_t rows_read(int64_t rows) const { return (rows - 1) * sh + kh; }
  // Columns of one row after the vertical filter, zero padded on both sides: output column
  // ow reads padded columns ow * sw .. ow * sw + kw - 1.
  EMOKERNELS_HD int64_t padded_width() const { return w + 2 * pw; }
};

}  // namespace emokernels::cp
