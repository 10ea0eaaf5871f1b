// Training-curve plot (PNG) from metrics.jsonl with gnuplot.
#ifndef BLOCKSERVE_TRAINER_PLOT_H_
#define BLOCKSERVE_TRAINER_PLOT_H_

#include <string>

#include "absl/status/status.h"

namespace blockserve::trainer {

// Reads metrics.jsonl rows ({"step", "bits_per_token"} and {"step", "eval_bits_per_token"})
// and renders training and held-out bits/token against step into `png` with gnuplot.
absl::Status WriteTrainingPlot(const std::string& metrics_jsonl, const std::string& png);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_PLOT_H_
