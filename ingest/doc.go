// Package ingest holds the two ways mail enters the spool: smtpd and scanfolder.
package ingest
