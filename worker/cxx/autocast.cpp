// CUDA autocast on and off through libtorch's current API.
//
// tch's `autocast` calls `at::autocast::is_enabled()` / `set_enabled()`, which
// PyTorch 2.11 deprecates with a TORCH_WARN_DEPRECATION on every call: two
// warning lines an optimisation step in the trial's log. These are the
// functions those deprecated ones forward to (ATen/autocast_mode.h), declared
// here instead of including that header, which pulls in all of ATen.
#include <c10/core/DeviceType.h>

namespace at::autocast {
bool is_autocast_enabled(c10::DeviceType device_type);
void set_autocast_enabled(c10::DeviceType device_type, bool enabled);
void clear_cache();
int increment_nesting();
int decrement_nesting();
}  // namespace at::autocast

extern "C" {
// None of these throws: they read or write thread-local flags and clear a cache.
bool sweep_autocast_cuda_is_enabled() { return at::autocast::is_autocast_enabled(c10::DeviceType::CUDA); }
void sweep_autocast_cuda_set_enabled(bool enabled) { at::autocast::set_autocast_enabled(c10::DeviceType::CUDA, enabled); }
int sweep_autocast_increment_nesting() { return at::autocast::increment_nesting(); }
int sweep_autocast_decrement_nesting() { return at::autocast::decrement_nesting(); }
void sweep_autocast_clear_cache() { at::autocast::clear_cache(); }
}
