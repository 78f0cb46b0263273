package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Listen makes conn, a connection of its caller's own, receive the
// notifications of channel (see EventsChannel and SessionsChannel).
func Listen(ctx context.Context, conn *pgx.Conn, channel string) error {
	_, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	return err
}

// Unlisten stops every notification of conn, before it goes back to a pool.
func Unlisten(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "UNLISTEN *")
	return err
}
