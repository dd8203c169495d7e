#ifndef AIOFLOW_H
#define AIOFLOW_H
#include <stddef.h>
#include <stdint.h>
#include "api.h"
#endif
