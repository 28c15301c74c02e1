package k8s

// inNetNS returns the command line that runs bin with args inside network
// namespace netns (unless it is ""). ip enters the namespace and execs bin,
// so the pid we hold is the daemon's own.
func inNetNS(netns, bin string, args []string) []string {
	argv := append([]string{bin}, args...)
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...)
	}
	return argv
}
