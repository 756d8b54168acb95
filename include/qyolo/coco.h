// COCO detection data: instances annotations, detection results, and COCOeval (bbox).
#pragma once

#include "qyolo/status.h"

namespace qyolo {
// (to be filled by the COCO module)
}  // namespace qyolo
