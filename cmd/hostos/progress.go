package main

import (
	"io"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws one bar per step on a terminal and nothing otherwise.
type progress struct {
	mu   sync.Mutex
	out  io.Writer
	bars map[string]*progressbar.ProgressBar
	on   bool
}

func newProgress(quiet bool) *progress {
	return &progress{out: os.Stderr, bars: map[string]*progressbar.ProgressBar{}, on: !quiet && term.IsTerminal(int(os.Stderr.Fd()))}
}

func (p *progress) update(step string, done, total int64) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.bars[step]
	if !ok {
		b = progressbar.NewOptions64(total, progressbar.OptionSetWriter(p.out), progressbar.OptionSetDescription(step),
			progressbar.OptionShowBytes(total > 1), progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(30))
		p.bars[step] = b
	}
	if total > 0 && b.GetMax64() != total {
		b.ChangeMax64(total)
	}
	_ = b.Set64(done)
	if done >= total && total > 0 {
		_ = b.Finish()
	}
}
