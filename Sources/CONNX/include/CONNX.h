/* Umbrella header of the CONNX module: the generated ONNX bindings and Topiary's C helpers. */
#include "onnx.pb-c.h"
#include "topiary_io.h"
