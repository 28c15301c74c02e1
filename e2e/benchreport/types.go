// Package benchreport turns make bench's JSON into the Markdown report and
// the pictures the README shows (SVG, drawn with gonum/plot): throughput
// per path, the first packet of new relay-only pairs, and the control
// plane at 10, 100 and 1000 nodes.
package benchreport

// Throughput is the data plane part: TCP through each path, side by side
// in one run.
type Throughput struct {
	Rounds int              `json:"rounds"`
	Paths  []PathThroughput `json:"paths"`
}

// PathThroughput is one path's mean over the rounds, and each round.
type PathThroughput struct {
	Name            string    `json:"name"`
	Gbps            float64   `json:"gbps"`
	RoundsGbps      []float64 `json:"rounds_gbps"`
	CPUPerGbit      float64   `json:"cpu_s_per_gbit"`
	RelayCPUPerGbit float64   `json:"relay_cpu_s_per_gbit,omitempty"`
	RetransmitPct   float64   `json:"retransmit_pct"`
}

// FirstPacket is the time from both daemons ready to the first answered
// ping, for new relay-only pairs.
type FirstPacket struct {
	Trials int       `json:"trials"`
	Ms     []float64 `json:"ms"`
	P50Ms  float64   `json:"p50_ms"`
	MaxMs  float64   `json:"max_ms"`
}

// Scale is one size of the control plane part.
type Scale struct {
	Nodes int `json:"nodes"`
	// JoinP50Ms and JoinMaxMs: one more node, its MeshNode created to its
	// route installed.
	JoinP50Ms float64 `json:"join_p50_ms"`
	JoinMaxMs float64 `json:"join_max_ms"`
	// BurstMs: a burst of BurstNodes, from the last create to every route.
	BurstNodes int     `json:"burst_nodes"`
	BurstMs    float64 `json:"burst_ms"`
	// Over a quiet window.
	CPUPercent     float64            `json:"idle_cpu_percent_of_a_core"`
	RSSMiB         float64            `json:"rss_mib"`
	WritesPerMin   float64            `json:"api_writes_per_min"`
	ReadsPerMin    float64            `json:"api_reads_per_min"`
	RequestsByKind map[string]float64 `json:"api_requests_per_min_by_kind"`
	// DataPlane is lace0 at this size (dataplane.go).
	DataPlane *ScaleDataPlane `json:"data_plane,omitempty"`
}

// The files make bench writes, in the bench directory.
const (
	ThroughputFile  = "throughput.json"
	FirstPacketFile = "first-packet.json"
	ScaleFile       = "scale.json"
)

// CNIAdd is CNI ADD latency on one node through libcni, the wirelace
// plugins against a reference, with and without peers.
type CNIAdd struct {
	Runs []CNIRun `json:"runs"`
}

// CNIRun is one plugin's ADDs at one number of peers.
type CNIRun struct {
	Plugin string    `json:"plugin"`
	Peers  int       `json:"peers"`
	Ms     []float64 `json:"ms"`
	P50Ms  float64   `json:"p50_ms"`
	P99Ms  float64   `json:"p99_ms"`
}

// CNIAddFile holds CNIAdd.
const CNIAddFile = "cni-add.json"

// Join is new nodes joining a running mesh: from each one's MeshNode first
// seen to it answering pings from every running node.
type Join struct {
	Trials []JoinTrial `json:"trials"`
	P50Ms  float64     `json:"p50_ms"`
	MaxMs  float64     `json:"max_ms"`
}

// JoinTrial is one new node: where it sits (public, cone, symmetric), when
// each running node first reached it, and the last of those (Ms).
type JoinTrial struct {
	Node string     `json:"node"`
	Kind string     `json:"kind"`
	From []JoinFrom `json:"from"`
	Ms   float64    `json:"ms"`
}

// JoinFrom is one running node's first reply from the new node.
type JoinFrom struct {
	Node string  `json:"node"`
	Ms   float64 `json:"ms"`
}

// JoinFile holds Join.
const JoinFile = "join.json"
