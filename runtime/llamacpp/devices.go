package llamacpp

/*
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// From ggml-backend.h and llama.h (same binary; the Go wrapper does not
// expose them). Devices and models are passed as opaque pointers.
extern size_t ggml_backend_dev_count(void);
extern void * ggml_backend_dev_get(size_t index);
extern const char * ggml_backend_dev_name(void * dev);
extern const char * ggml_backend_dev_description(void * dev);
extern void ggml_backend_dev_memory(void * dev, size_t * free, size_t * total);
extern int ggml_backend_dev_type(void * dev);
extern void ggml_backend_dev_get_props(void * dev, void * props);
struct llama_model;
extern int32_t llama_model_n_layer(const struct llama_model * model);

// nextact_dev_props mirrors struct ggml_backend_dev_props of the pinned
// ggml (ollama v0.17.4, with its compute-capability fields). It is read
// out of a larger zeroed buffer, so a grown struct cannot write past it;
// TestDevicesMatchAccessors checks the leading fields against the
// accessor functions.
struct nextact_dev_props {
	const char * name;
	const char * description;
	size_t memory_free;
	const char * id;
	size_t memory_total;
	int type;
	const char * device_id;
	bool caps_async, caps_host_buffer, caps_buffer_from_host_ptr, caps_events;
	int driver_major, driver_minor, compute_major, compute_minor, integrated;
	const char * library;
};

static void nextact_get_props(void * dev, struct nextact_dev_props * out) {
	union { struct nextact_dev_props p; char pad[1024]; } u;
	memset(&u, 0, sizeof u);
	ggml_backend_dev_get_props(dev, &u);
	*out = u.p;
}
*/
import "C"

import (
	"os"
	"sort"
	"strconv"
	"unsafe"

	"github.com/ollama/ollama/llama"
)

// Device is a compute device ggml found at start (the CPU, and each GPU
// whose backend library was loaded from <exe>/../lib/ollama).
type Device struct {
	// Name is ggml's name (CPU, CUDA0, ...); Description the hardware's
	// (an NVIDIA H200, the CPU's brand string).
	Name, Description string
	// Type is cpu, gpu, igpu or accel.
	Type string
	// Library is the backend (CUDA, ...; empty for the CPU).
	Library string
	// ID is the device's PCI bus id when known.
	ID string
	// MemoryTotal and MemoryFree are bytes, as ggml reports them when the
	// engine starts.
	MemoryTotal, MemoryFree uint64
	// ComputeMajor and ComputeMinor are the compute capability (9.0 for
	// Hopper); 0 when the backend does not give one.
	ComputeMajor, ComputeMinor int
	// Layers is how many of the model's layers (the output layer counted
	// as one) llama.cpp puts on this device; set by Open.
	Layers int
}

// ComputeCapability is "major.minor", or "" when unknown.
func (d Device) ComputeCapability() string {
	if d.ComputeMajor == 0 && d.ComputeMinor == 0 {
		return ""
	}
	return strconv.Itoa(d.ComputeMajor) + "." + strconv.Itoa(d.ComputeMinor)
}

// deterministicEnv is what the CUDA patch set of `make cuda` reads
// (scripts/cuda/patches): "1" selects batch-invariant kernels.
const deterministicEnv = "GGML_CUDA_DETERMINISTIC"

// setDeterministic sets deterministicEnv for the process (cgo's setenv:
// the C library sees it) before any CUDA kernel runs.
func setDeterministic(on bool) {
	v := "0"
	if on {
		v = "1"
	}
	_ = os.Setenv(deterministicEnv, v)
}

// GPU reports whether the device is a GPU (discrete or integrated).
func (d Device) GPU() bool { return d.Type == "gpu" || d.Type == "igpu" }

var devTypes = [...]string{"cpu", "gpu", "igpu", "accel"}

// Devices lists every device ggml found, loading the backends first.
func Devices() []Device {
	backendInit()
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := range n {
		dev := C.ggml_backend_dev_get(C.size_t(i))
		var p C.struct_nextact_dev_props
		C.nextact_get_props(dev, &p)
		var free, total C.size_t
		C.ggml_backend_dev_memory(dev, &free, &total)
		t := int(C.ggml_backend_dev_type(dev))
		d := Device{
			Name: C.GoString(C.ggml_backend_dev_name(dev)), Description: C.GoString(C.ggml_backend_dev_description(dev)),
			Type: "unknown", Library: goString(p.library), ID: goString(p.device_id),
			MemoryTotal: uint64(total), MemoryFree: uint64(free),
			ComputeMajor: int(p.compute_major), ComputeMinor: int(p.compute_minor),
		}
		if t >= 0 && t < len(devTypes) {
			d.Type = devTypes[t]
		}
		out = append(out, d)
	}
	return out
}

// propsNames returns, for each device, the name and description its props
// struct gives (for the layout test).
func propsNames() [][2]string {
	n := int(C.ggml_backend_dev_count())
	out := make([][2]string, n)
	for i := range n {
		var p C.struct_nextact_dev_props
		C.nextact_get_props(C.ggml_backend_dev_get(C.size_t(i)), &p)
		out[i] = [2]string{goString(p.name), goString(p.description)}
	}
	return out
}

func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// modelLayers is the model's number of repeating layers. llama.Model does
// not export its *C.struct_llama_model; in v0.17.4 it is the struct's only
// field (type Model struct { c *C.struct_llama_model }), and
// TestModelLayers compares the result with the GGUF's block count.
func modelLayers(m *llama.Model) int {
	c := *(**C.struct_llama_model)(unsafe.Pointer(m))
	return int(C.llama_model_n_layer(c))
}

// assignLayers sets devs[i].Layers as llama.cpp's load_tensors places a
// model of nLayer repeating layers with gpuLayers offloaded: the last
// min(gpuLayers, nLayer+1) of the nLayer+1 layers (the output layer is the
// last) go to the GPUs (the integrated ones only when there is no
// discrete one), split in proportion to their free memory; the rest, and
// the input layer, stay on the CPU.
func assignLayers(devs []Device, nLayer, gpuLayers int) {
	var gpus []int
	for _, want := range []string{"gpu", "igpu"} {
		seen := map[string]bool{}
		for i, d := range devs {
			if d.Type == want && (d.ID == "" || !seen[d.ID]) {
				seen[d.ID] = true
				gpus = append(gpus, i)
			}
		}
		if len(gpus) > 0 {
			break
		}
	}
	cpu := -1
	for i, d := range devs {
		if d.Type == "cpu" && cpu < 0 {
			cpu = i
		}
	}
	act := 0
	if len(gpus) > 0 {
		act = min(max(gpuLayers, 0), nLayer+1)
	}
	splits := make([]float64, len(gpus))
	var sum float64
	for k, i := range gpus {
		w := float64(devs[i].MemoryFree)
		if devs[i].MemoryFree == 0 { // unknown: split evenly
			w = 1
		}
		sum += w
		splits[k] = sum
	}
	start := max(nLayer-gpuLayers, 0)
	for il := 0; il <= nLayer; il++ {
		if il < start || il-start >= act {
			if cpu >= 0 {
				devs[cpu].Layers++
			}
			continue
		}
		x := float64(il-start) / float64(act)
		k := sort.Search(len(splits), func(k int) bool { return splits[k]/sum > x })
		devs[gpus[min(k, len(gpus)-1)]].Layers++
	}
}
