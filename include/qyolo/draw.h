// Drawing detections onto images so people can look at what the model sees.
#pragma once

#include <string>
#include <vector>

#include "qyolo/vision.h"

namespace qyolo {
// (to be filled by the drawing module)
}  // namespace qyolo
