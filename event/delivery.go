package event

import (
	"context"
	"time"
)

// Acker settles one delivered buffer message.
type Acker interface {
	// Ack acknowledges the message and waits for the buffer to confirm.
	// Call it only after the message's effect is durable.
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay.
	Nak(delay time.Duration) error
	// InProgress extends the ack deadline during long work.
	InProgress() error
}

// Message is one delivered buffer message (a group-commit message holding
// many events, a failed item, or a closed session) together with its
// stream position and the means to acknowledge it.
type Message struct {
	Seq     uint64
	Subject string
	// Partition is the partition of an events message, -1 otherwise.
	Partition int
	Data      []byte
	Header    map[string][]string
	// Published is when the buffer stored the message.
	Published time.Time
	// Delivered counts deliveries, 1 on the first.
	Delivered uint64
	// Delivery is the consumer's delivery sequence: one more for each
	// delivery it sends, redeliveries included, so a jump means a delivery
	// never arrived. 0 when unknown (a message read, not delivered).
	Delivery uint64
	Acker
}
