package main

import (
	"io"
	"slices"
	"testing"
	"time"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models/registry"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// The model flags: --model repeats (paths with commas stay whole), the
// command line replaces NEXTACT_MODEL, --keep-alive reads Ollama's forms,
// and a --gpu-memory-budget that is neither auto nor a size is refused.
func TestModelFlags(t *testing.T) {
	t.Setenv("NEXTACT_MODEL", "/env/model.gguf")
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Models, pathList{"/env/model.gguf"}) || c.GPUMemoryBudget != "auto" || time.Duration(c.KeepAlive) != registry.DefaultKeepAlive {
		t.Errorf("defaults: %+v %q %v", c.Models, c.GPUMemoryBudget, c.KeepAlive)
	}
	c, err = parseServe([]string{"--model", "a=/m/a,1.gguf", "--model", "/m/b.gguf", "--keep-alive", "-1",
		"--gpu-memory-budget", "20GiB", "--host-memory-budget", "1GiB", "--models-dir", "/m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Models, pathList{"a=/m/a,1.gguf", "/m/b.gguf"}) || time.Duration(c.KeepAlive) != registry.KeepAliveForever ||
		c.HostMemoryBudget != 1<<30 || c.ModelsDir != "/m" {
		t.Errorf("flags: %+v", c)
	}
	b, err := memoryBudget(c, nil, nil)
	if err != nil || b != (registry.Memory{GPU: 20 << 30, Host: 1 << 30}) {
		t.Errorf("budget %+v, %v", b, err)
	}
	for _, args := range [][]string{{"--gpu-memory-budget", "lots"}, {"--keep-alive", "soon"}} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// fixedGPU is GPU telemetry with one sample.
type fixedGPU admission.GPUSample

func (g fixedGPU) Snapshot() (admission.GPUSample, bool) { return admission.GPUSample(g), true }

// The default GPU budget is the free memory NVML reports (else the GPU
// backend's), less the larger of 512 MiB and a tenth; without a GPU there
// is no bound.
func TestAutoGPUBudget(t *testing.T) {
	c := testConfig()
	gpu := fixedGPU{Devices: []admission.GPUDevice{{MemoryTotal: 80 << 30, MemoryUsed: 20 << 30}}}
	b, err := memoryBudget(c, gpu, nil)
	if want := int64(60<<30) - int64(6<<30); err != nil || b.GPU != want {
		t.Errorf("from NVML: %d, want %d (%v)", b.GPU, want, err)
	}
	devs := []llamacpp.Device{{Type: "cpu", MemoryFree: 100 << 30}, {Type: "gpu", MemoryFree: 4 << 30}}
	if b, _ := memoryBudget(c, nil, devs); b.GPU != 4<<30-512<<20 {
		t.Errorf("from the backend: %d", b.GPU)
	}
	if b, _ := memoryBudget(c, nil, devs[:1]); b.GPU != 0 {
		t.Errorf("without a GPU: %d, want no bound", b.GPU)
	}
	if resolvedGPULayers(serveConfig{GPULayers: -1}, devs[:1]) != 0 || resolvedGPULayers(serveConfig{GPULayers: -1}, devs) != -1 {
		t.Error("resolvedGPULayers")
	}
}
