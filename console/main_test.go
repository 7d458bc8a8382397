package console_test

import (
	"testing"

	"github.com/proxyq/proxyq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }
