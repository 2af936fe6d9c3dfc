// Package policies holds the admission policies Riposte ships, so the manager
// recognises the decision policy by its content, not by its name.
package policies

import _ "embed"

// ApprovalGateDecisions is approvalgate-decisions.yaml: the policy and the
// binding that make people's decisions on gates trustworthy.
//
//go:embed approvalgate-decisions.yaml
var ApprovalGateDecisions []byte
