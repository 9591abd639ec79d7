package regulation

import "context"

type tokenNameKey struct{}

func withTokenName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, tokenNameKey{}, name)
}

// tokenName is the name of the admin token that authorised the request.
func tokenName(ctx context.Context) string {
	s, _ := ctx.Value(tokenNameKey{}).(string)
	return s
}
