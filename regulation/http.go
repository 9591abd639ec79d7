package regulation

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// maxRequestBytes bounds a POST /v1/regulations body.
const maxRequestBytes = 1 << 20

// Handler serves the regulations API (docs/api.md) behind the admin
// tokens (name -> token); the name of the token used is the audit's
// requested_by.
func (r *Registry) Handler(admin map[string]string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/regulations", r.create)
	mux.HandleFunc("GET /v1/regulations", r.list)
	mux.HandleFunc("GET /v1/regulations/{id}", r.get)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name, ok := httpx.BearerName(admin, req)
		if !ok {
			httpx.Unauthorized(w)
			return
		}
		mux.ServeHTTP(w, req.WithContext(withTokenName(req.Context(), name)))
	})
}

func (r *Registry) create(w http.ResponseWriter, req *http.Request) {
	if ct := req.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		httpx.WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxRequestBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, "payload_too_large", "request body over 1 MiB")
		return
	}
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_regulation", "reading the request body: "+err.Error())
		return
	}
	var q Request
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		httpx.WriteError(w, http.StatusBadRequest, "invalid_regulation",
			`body must be {"type": "suppress|delete|suppress_with_delete|unsuppress", "user_ids": ["…"]}: `+err.Error())
		return
	}
	reg, created, err := r.Create(req.Context(), q, tokenName(req.Context()))
	switch {
	case errors.Is(err, ErrInvalid):
		httpx.WriteError(w, http.StatusBadRequest, "invalid_regulation", strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, ErrConflict):
		httpx.WriteError(w, http.StatusConflict, "regulation_conflict", "the id is already used by a regulation of another type or other user_ids")
	case err != nil:
		r.log.Error("storing regulation", "err", err)
		httpx.WriteError(w, http.StatusServiceUnavailable, "regulations_unavailable", "the regulation could not be stored; retry")
	case created:
		w.Header().Set("Location", "/v1/regulations/"+reg.ID)
		httpx.WriteJSON(w, http.StatusCreated, reg)
	default:
		httpx.WriteJSON(w, http.StatusOK, reg)
	}
}

func (r *Registry) get(w http.ResponseWriter, req *http.Request) {
	reg, ok := r.Get(req.PathValue("id"))
	if !ok {
		httpx.WriteError(w, http.StatusNotFound, "regulation_not_found", "no regulation with this id")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, reg)
}

func (r *Registry) list(w http.ResponseWriter, _ *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"regulations": r.List()})
}
