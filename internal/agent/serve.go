package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Mapper knows the few kinds the tools use, so a client needs no
// discovery (a request of its own, and rights to it) before its first call.
func Mapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, kind := range []string{"Incident", "IncidentList", "Playbook", "PlaybookList", "ApprovalGate", "ApprovalGateList"} {
		m.Add(riposte.GroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	m.Add(authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"), meta.RESTScopeRoot)
	return m
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}()

// NewClient is a client acting as cfg's identity.
func NewClient(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: scheme, Mapper: Mapper()})
}

// ServeStdio serves one agent over stdin and stdout, as cfg's identity
// (the agent's kubeconfig or ServiceAccount), until ctx ends or the agent
// closes the stream.
func ServeStdio(ctx context.Context, cfg *rest.Config) error {
	c, err := NewClient(cfg)
	if err != nil {
		return err
	}
	return (&Server{Client: c}).MCP().Run(ctx, &mcp.StdioTransport{})
}

type callerKey struct{}

// HTTPHandler serves the streamable HTTP transport, statelessly: every
// request acts as the Kubernetes bearer token it carries (the agent's
// ServiceAccount token, say), against the API server cluster names. The
// handler keeps no credentials: cluster's are stripped, so a request
// without a token is refused rather than served as anyone.
func HTTPHandler(cluster *rest.Config) (http.Handler, error) {
	if cluster.Insecure {
		return nil, errors.New("the kubeconfig skips verifying the API server's certificate: agents' tokens would go to whoever answers; give its CA instead")
	}
	anonymous := rest.AnonymousClientConfig(cluster)
	tools := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		c, _ := r.Context().Value(callerKey{}).(client.Client)
		return (&Server{Client: c}).MCP()
	}, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="riposte-mcp"`)
			http.Error(w, "send your Kubernetes bearer token (Authorization: Bearer ...): Riposte's MCP server acts as its caller, never as itself", http.StatusUnauthorized)
			return
		}
		cfg := rest.CopyConfig(anonymous)
		cfg.BearerToken = strings.TrimSpace(token)
		c, err := NewClient(cfg)
		if err != nil {
			http.Error(w, "building a client for your token: "+err.Error(), http.StatusInternalServerError)
			return
		}
		tools.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	}), nil
}
