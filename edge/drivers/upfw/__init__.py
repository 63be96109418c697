"""Our own boards (loop-detector cards, bed load cells, door counters, queue kiosks) over upfw."""
