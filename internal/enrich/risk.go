package enrich

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// RiskFlags lists what a pod spec allows that an attacker would want. It is
// pure, so it is judged the same for a pod and for a workload's template.
func RiskFlags(spec *corev1.PodSpec) []string {
	var flags []string
	add := func(f string) {
		if !slices.Contains(flags, f) {
			flags = append(flags, f)
		}
	}
	if spec.HostNetwork {
		add("HostNetwork")
	}
	if spec.HostPID {
		add("HostPID")
	}
	if spec.HostIPC {
		add("HostIPC")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			add("HostPath:" + v.HostPath.Path)
		}
	}
	podRunAsNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	podRunAsUser := (*int64)(nil)
	if spec.SecurityContext != nil {
		podRunAsUser = spec.SecurityContext.RunAsUser
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			sc := c.SecurityContext
			if sc != nil && sc.Privileged != nil && *sc.Privileged {
				add("Privileged")
			}
			// Escalation is allowed unless turned off explicitly.
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				add("PrivilegeEscalation")
			}
			if sc != nil && sc.Capabilities != nil {
				for _, cap := range sc.Capabilities.Add {
					add("AddedCapability:" + string(cap))
				}
			}
			nonRoot := podRunAsNonRoot
			if sc != nil && sc.RunAsNonRoot != nil {
				nonRoot = *sc.RunAsNonRoot
			}
			user := podRunAsUser
			if sc != nil && sc.RunAsUser != nil {
				user = sc.RunAsUser
			}
			if (user != nil && *user == 0) || (!nonRoot && user == nil) {
				add("RunsAsRoot")
			}
		}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		add("ServiceAccountToken")
	}
	return flags
}
