package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/partition/disk"
)

// registryAuth reads --registry-auth: USER:PASSWORD, or a FILE holding that line (the safer form: a
// password on the command line shows in ps). "" means the docker config's credentials, else anonymous.
func registryAuth(v string) (authn.Authenticator, error) {
	if v == "" {
		return nil, nil
	}
	text := v
	if fi, err := os.Stat(v); err == nil && !fi.IsDir() {
		b, err := disk.ReadInput(v, "--registry-auth", container.MaxCredentialsBytes)
		if err != nil {
			return nil, err
		}
		text = string(b)
	}
	a, err := container.ParseCredentials(text)
	if err != nil {
		return nil, fmt.Errorf("--registry-auth: %w", err)
	}
	return a, nil
}
