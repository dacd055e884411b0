// Package hostapp groups what works on a whole host OS image: assembly, inspection, bootloader
// environments and, in time, the A/B update engine.
package hostapp
