"""The process around the computation: compilation cache and options, interrupts, distributed
start-up. The bottom layer: imports no other part of pcmmeta except `pcmmeta.errors`."""
