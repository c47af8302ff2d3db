package llamacpp_test

import (
	"fmt"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// The device list reads ggml's props struct through a mirror of its
// layout: its names agree with the accessor functions, so a change of the
// struct's leading fields fails here. This machine has a CPU device.
func TestDevicesMatchAccessors(t *testing.T) {
	devs := llamacpp.Devices()
	props := llamacpp.PropsNames()
	if len(devs) == 0 || len(devs) != len(props) {
		t.Fatalf("%d devices, %d props", len(devs), len(props))
	}
	cpu := false
	for i, d := range devs {
		if props[i] != [2]string{d.Name, d.Description} {
			t.Errorf("device %d: props say %q, accessors %q / %q", i, props[i], d.Name, d.Description)
		}
		if d.Type == "cpu" {
			cpu = true
			if d.MemoryTotal == 0 || d.MemoryFree > d.MemoryTotal {
				t.Errorf("CPU memory %d free of %d", d.MemoryFree, d.MemoryTotal)
			}
		}
	}
	if !cpu {
		t.Fatalf("no CPU device in %+v", devs)
	}
}

// The layer count read through llama.Model's unexported pointer is the
// GGUF's block count; every layer (the output layer counted) is on the
// CPU without a GPU backend, on the GPUs with one.
func TestModelLayers(t *testing.T) {
	e := open(t, 1, 64, 16)
	info, err := models.Inspect(testModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.ModelLayers(); n != info.BlockCount || n == 0 {
		t.Fatalf("llama_model_n_layer %d, GGUF block count %d", n, info.BlockCount)
	}
	onCPU, onGPU := 0, 0
	for _, d := range e.Devices() {
		if d.GPU() {
			onGPU += d.Layers
		} else {
			onCPU += d.Layers
		}
	}
	want := [2]int{info.BlockCount + 1, 0} // CPU, GPU
	if e.GPU() {
		want = [2]int{0, info.BlockCount + 1}
	}
	if got := [2]int{onCPU, onGPU}; got != want {
		t.Fatalf("layers on CPU, GPU: %v, want %v", got, want)
	}
}

// Layers go where llama.cpp's load_tensors puts them: the last
// min(gpu_layers, n+1) to the GPUs in proportion to their free memory,
// integrated GPUs only without a discrete one, duplicates (same PCI id)
// once.
func TestAssignLayers(t *testing.T) {
	t.Parallel()
	cpu := llamacpp.Device{Name: "CPU", Type: "cpu"}
	gpu := func(name, id string, free uint64) llamacpp.Device {
		return llamacpp.Device{Name: name, Type: "gpu", ID: id, MemoryFree: free}
	}
	cases := []struct {
		name      string
		devs      []llamacpp.Device
		n, layers int
		want      string
	}{
		{"cpu only", []llamacpp.Device{cpu}, 16, 999, "CPU:17"},
		{"all on one gpu", []llamacpp.Device{cpu, gpu("CUDA0", "a", 80)}, 16, 999, "CPU:0 CUDA0:17"},
		{"partial offload", []llamacpp.Device{cpu, gpu("CUDA0", "a", 80)}, 16, 10, "CPU:7 CUDA0:10"},
		{"no offload", []llamacpp.Device{cpu, gpu("CUDA0", "a", 80)}, 16, 0, "CPU:17 CUDA0:0"},
		{"split by free memory", []llamacpp.Device{cpu, gpu("CUDA0", "a", 30), gpu("CUDA1", "b", 10)}, 31, 999, "CPU:0 CUDA0:24 CUDA1:8"},
		{"same device twice", []llamacpp.Device{cpu, gpu("CUDA0", "a", 30), gpu("Vulkan0", "a", 30)}, 15, 999, "CPU:0 CUDA0:16 Vulkan0:0"},
		{"integrated only without discrete", []llamacpp.Device{cpu, {Name: "iGPU", Type: "igpu"}, gpu("CUDA0", "a", 5)}, 7, 999, "CPU:0 iGPU:0 CUDA0:8"},
		{"integrated alone", []llamacpp.Device{cpu, {Name: "iGPU", Type: "igpu"}}, 7, 999, "CPU:0 iGPU:8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			llamacpp.AssignLayers(tc.devs, tc.n, tc.layers)
			got := ""
			for i, d := range tc.devs {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprintf("%s:%d", d.Name, d.Layers)
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
