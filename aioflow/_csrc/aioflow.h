#ifndef AIOFLOW_H
#define AIOFLOW_H
#include <stdint.h>
#include "api.h"
#endif
