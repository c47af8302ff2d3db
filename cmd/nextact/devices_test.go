package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
	"github.com/nextact/nextact/server"
)

// --step-tokens 0 picks the budget by device: 512 on CPUs, 2048 when a
// GPU takes layers; an explicit value and --slots win.
func TestStepTokensByDevice(t *testing.T) {
	t.Parallel()
	cpu := llamacpp.Device{Name: "CPU", Type: "cpu"}
	gpu := llamacpp.Device{Name: "CUDA0", Type: "gpu"}
	cases := []struct {
		flag, slots, gpuLayers int
		devs                   []llamacpp.Device
		want                   int
	}{
		{0, 8, -1, []llamacpp.Device{cpu}, 512},
		{0, 8, -1, []llamacpp.Device{cpu, gpu}, 2048},
		{0, 8, 0, []llamacpp.Device{cpu, gpu}, 512},
		{0, 1024, -1, []llamacpp.Device{cpu}, 1024},
		{96, 8, -1, []llamacpp.Device{cpu, gpu}, 96},
	}
	for _, tc := range cases {
		c := serveConfig{StepTokens: tc.flag, Slots: tc.slots, GPULayers: tc.gpuLayers}
		if got := stepTokens(c, tc.devs); got != tc.want {
			t.Errorf("%+v on %v: %d, want %d", c, tc.devs, got, tc.want)
		}
	}
}

// The real stack reports the devices ggml found on /health/ready, and
// where every layer of the model is (the output layer counted).
func TestReadyReportsDevices(t *testing.T) {
	ts := startServer(t, testConfig())
	resp, err := http.Get(ts.URL + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status  string          `json:"status"`
		Devices []server.Device `json:"devices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	info, err := models.Inspect(defaultModelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if body.Status != "starting" || len(body.Devices) == 0 {
		t.Fatalf("readiness %+v", body)
	}
	layers := 0
	for _, d := range body.Devices {
		layers += d.Layers
	}
	if cpu := body.Devices[0]; cpu.Type != "cpu" || cpu.MemoryTotalBytes == 0 || layers != info.BlockCount+1 {
		t.Fatalf("devices %+v: want the CPU first and %d layers in all", body.Devices, info.BlockCount+1)
	}
}

func defaultModelPath(t *testing.T) string {
	t.Helper()
	p, err := models.EnsureDefault(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
