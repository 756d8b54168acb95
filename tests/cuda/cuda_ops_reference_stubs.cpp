// The standalone GPU-test build compiles qyolo's vision sources as CPU references without the
// COCO module; postprocess.cpp's class-name table is the only thing it wanted from there.
#include "qyolo/coco.h"

namespace qyolo {

std::string_view coco80_name(int) { return "object"; }

}  // namespace qyolo
